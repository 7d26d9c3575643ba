// The portcullis demo app: log in at the issuer with the authorization code flow and PKCE (S256), check the
// returned state, exchange the code, keep the access token in memory only, and call the API with it.
'use strict';

const app = document.getElementById('app');
const config = {
  issuer: app.dataset.issuer,
  clientId: app.dataset.clientId,
  audience: app.dataset.audience,
  scope: app.dataset.scope,
};
// The PKCE verifier and the state must survive the trip to the issuer; they live in sessionStorage until the
// callback and are removed there. The access token never leaves this variable.
const PENDING = 'portcullis-demo-login';
let accessToken = null;

const session = document.getElementById('session');
const loginButton = document.getElementById('login');
const logoutButton = document.getElementById('logout');
const results = document.getElementById('results');

function base64url(bytes) {
  let text = '';
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText(length) {
  return base64url(crypto.getRandomValues(new Uint8Array(length)));
}

function redirectUri() {
  return `${location.origin}/callback`;
}

function showSession(text, outcome) {
  session.textContent = text;
  session.className = `verdict ${outcome ?? ''}`;
  const loggedIn = accessToken !== null;
  loginButton.hidden = loggedIn;
  logoutButton.hidden = !loggedIn;
}

async function logIn() {
  const verifier = randomText(32);
  const state = randomText(16);
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const url = new URL('authorize', config.issuer);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: config.clientId,
    redirect_uri: redirectUri(),
    scope: config.scope,
    audience: config.audience,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.href);
}

// Shown to the user only; the API verifies the token, the app never trusts what it decodes.
function decodeClaims(token) {
  const payload = token.split('.')[1] ?? '';
  const binary = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

async function finishLogIn() {
  const params = new URLSearchParams(location.search);
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null');
  sessionStorage.removeItem(PENDING);
  // The code and state leave the address bar (and the history) at once.
  history.replaceState(null, '', '/');
  if (params.has('error')) {
    showSession(`Login failed: ${params.get('error')} ${params.get('error_description') ?? ''}`, 'fail');
    return;
  }
  if (pending === null || params.get('state') !== pending.state) {
    showSession(
      'Login refused: the state the issuer sent back is not the one this app sent, so the code was not used ' +
        '(a forged or replayed callback).',
      'fail',
    );
    return;
  }
  showSession('Exchanging the authorization code…');
  let response;
  try {
    response = await fetch(new URL('oauth/token', config.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        client_id: config.clientId,
        code: params.get('code') ?? '',
        redirect_uri: redirectUri(),
        code_verifier: pending.verifier,
      }),
    });
  } catch (error) {
    showSession(`Token exchange failed: the issuer could not be reached (${error.message}).`, 'fail');
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.access_token !== 'string') {
    showSession(`Token exchange failed: HTTP ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`, 'fail');
    return;
  }
  accessToken = body.access_token;
  const claims = decodeClaims(accessToken);
  const permissions = Array.isArray(claims.permissions) ? claims.permissions.join(' ') : '';
  showSession(
    `Logged in as ${claims.sub}. Scope: ${body.scope || '(none)'}. Permissions: ${permissions || '(none)'}.`,
    'pass',
  );
}

function logOut() {
  accessToken = null;
  results.replaceChildren();
  showSession('Logged out: the token was only in this page\'s memory and is gone.');
}

async function call(path) {
  const headers = accessToken === null ? {} : { authorization: `Bearer ${accessToken}` };
  const card = document.createElement('section');
  card.className = 'call';
  card.dataset.path = path;
  const title = document.createElement('h3');
  title.textContent = `GET ${path}`;
  const status = document.createElement('p');
  status.className = 'status';
  const body = document.createElement('pre');
  card.append(title, status, body);
  try {
    const response = await fetch(path, { headers });
    card.dataset.status = String(response.status);
    status.textContent = `HTTP ${response.status} ${response.statusText}`;
    status.classList.add(response.ok ? 'pass' : 'fail');
    const challenge = response.headers.get('www-authenticate');
    if (challenge !== null) {
      const line = document.createElement('p');
      line.className = 'challenge';
      line.textContent = `WWW-Authenticate: ${challenge}`;
      status.after(line);
    }
    const text = await response.text();
    try {
      body.textContent = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      body.textContent = text;
    }
  } catch (error) {
    card.dataset.status = 'error';
    status.textContent = `The request failed: ${error.message}`;
    status.classList.add('fail');
  }
  results.querySelector(`section[data-path="${CSS.escape(path)}"]`)?.remove();
  results.prepend(card);
}

loginButton.addEventListener('click', () => {
  logIn().catch((error) => showSession(`Login could not start: ${error.message}`, 'fail'));
});
logoutButton.addEventListener('click', logOut);
for (const button of document.querySelectorAll('button[data-call]')) {
  button.addEventListener('click', () => call(button.dataset.call));
}
if (location.pathname === '/callback') {
  finishLogIn().catch((error) => showSession(`Login failed: ${error.message}`, 'fail'));
}
