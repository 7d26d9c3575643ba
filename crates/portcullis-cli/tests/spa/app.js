// The test page's script: Auth0's SPA SDK, unchanged (its UMD bundle defines `window.auth0`), configured from
// /config.json as an app would be, logs in at the issuer, gets tokens silently (through the iframe and with a
// refresh token), calls the API on this origin, revokes the refresh token and logs out. Results are shown as text only (`textContent`), as
// JSON in each result section, whose `data-run` counts the runs finished and `data-outcome` says how the last ended.
'use strict';

const element = (id) => document.getElementById(id);

/** The claims of a compact JWT, decoded for display (the SDK and the API do the checking). */
function claimsOf(token) {
  const base64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** The parts of an ID token's claims the test compares across logins and silent renewals. */
function idTokenSummary(claims) {
  const { iss, aud, sub, sid, auth_time, nonce, name, email } = claims;
  return { iss, aud, sub, sid, auth_time, has_nonce: typeof nonce === 'string', name, email };
}

/** An SDK error as data: its OAuth `error` and description when it has them. */
function errorOf(e) {
  return { error: e.error || e.name || 'Error', error_description: e.error_description || e.message || String(e) };
}

/** Shows the end of one run of `action`. */
function show(action, outcome, detail) {
  const section = element(`result-${action}`);
  section.querySelector('pre').textContent = JSON.stringify(detail, null, 2);
  section.dataset.outcome = outcome;
  section.dataset.run = String(Number(section.dataset.run) + 1);
}

/** Runs `work` for the button `action`, showing its answer or its error. */
function onClick(action, work) {
  element(action).addEventListener('click', async () => {
    try {
      show(action, 'ok', await work());
    } catch (e) {
      show(action, 'error', errorOf(e));
    }
  });
}

/** A silent renewal's answer, the tokens shown by their claims. */
function silentAnswer(answer) {
  const access = claimsOf(answer.access_token);
  return {
    scope: answer.scope,
    expires_in: answer.expires_in,
    access_token: { sub: access.sub, aud: access.aud, scope: access.scope, permissions: access.permissions },
    id_token: idTokenSummary(claimsOf(answer.id_token)),
  };
}

/** Shows who is logged in, as the SDK knows it from the ID token. */
async function showSession(auth0) {
  const user = await auth0.getUser();
  const session = element('session');
  element('user').hidden = !user;
  if (!user) {
    session.dataset.state = 'logged-out';
    session.textContent = 'Not logged in.';
    return;
  }
  session.dataset.state = 'logged-in';
  session.textContent = `Logged in as ${user.name}.`;
  element('user-name').textContent = user.name;
  element('user-email').textContent = user.email;
  element('user-sub').textContent = user.sub;
}

async function main() {
  const config = await (await fetch('/config.json')).json();
  const options = {
    domain: config.domain,
    clientId: config.clientId,
    authorizationParams: { redirect_uri: `${window.location.origin}/`, audience: config.audience, scope: config.scope },
  };
  // The app's client renews with refresh tokens (rotated at each use); a second one renews through the hidden
  // iframe (`prompt=none`, `response_mode=web_message`) on the issuer's session cookie.
  // `cacheLocation` as the settings give it (the SDK's default, memory, keeps the refresh token in a web worker).
  const cache = config.cacheLocation ? { cacheLocation: config.cacheLocation } : {};
  const auth0 = await window.auth0.createAuth0Client({ ...options, ...cache, useRefreshTokens: true });
  const iframe = await window.auth0.createAuth0Client({ ...options, useRefreshTokens: false });

  const query = new URLSearchParams(window.location.search);
  if ((query.has('code') || query.has('error')) && query.has('state')) {
    try {
      await auth0.handleRedirectCallback();
      show('callback', 'ok', { id_token: idTokenSummary(await auth0.getIdTokenClaims()) });
    } catch (e) {
      show('callback', 'error', errorOf(e));
    }
    window.history.replaceState({}, document.title, '/');
  }
  await showSession(auth0);

  element('login').addEventListener('click', () => auth0.loginWithRedirect());
  element('logout').addEventListener('click', () =>
    auth0.logout({ logoutParams: { returnTo: `${window.location.origin}/` } }),
  );
  onClick('silent-iframe', async () =>
    silentAnswer(await iframe.getTokenSilently({ cacheMode: 'off', detailedResponse: true })),
  );
  onClick('silent-refresh', async () =>
    silentAnswer(await auth0.getTokenSilently({ cacheMode: 'off', detailedResponse: true })),
  );
  onClick('call-api', async () => {
    const token = await auth0.getTokenSilently();
    const response = await fetch('/api/private-scoped', { headers: { Authorization: `Bearer ${token}` } });
    const text = await response.text();
    let body = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: shown as the text it is.
    }
    return { status: response.status, body };
  });
  onClick('revoke', async () => {
    await auth0.revokeRefreshToken();
    return { revoked: true };
  });
  document.body.dataset.ready = 'true';
}

main().catch((e) => {
  const session = element('session');
  session.dataset.state = 'error';
  session.textContent = `The page failed to start: ${JSON.stringify(errorOf(e))}`;
});
