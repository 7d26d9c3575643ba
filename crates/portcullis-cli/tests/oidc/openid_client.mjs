// An OpenID Connect relying party built on openid-client (panva), as app code would use it against an issuer:
// discovery, the client credentials grant, the authorization code flow with PKCE, nonce and state (the library
// validates the ID token), a refresh, userinfo, a call to an API with the access token, revocation, and requests
// the library must refuse. Prints one JSON document of results (claims and statuses, never a token).
//
//   node openid_client.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI API_URL AUDIENCE
//
// The code is got as a browser would: /authorize with login_hint (the user picked on the issuer's login page),
// whose redirect to REDIRECT_URI carries it; that URL is handed to openid-client as the callback it received.
//
// openid-client is loaded from $PORTCULLIS_INTEROP_DIR/node_modules when that is set (where .ci/run installs it),
// else from the usual module resolution.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

async function load(name) {
  const dir = process.env.PORTCULLIS_INTEROP_DIR;
  if (dir) {
    const require = createRequire(join(dir, 'package.json'));
    return import(pathToFileURL(require.resolve(name)).href);
  }
  return import(name);
}

// An uncaught error would print the response body it carries, tokens included: say only what went wrong.
process.on('uncaughtException', (error) => {
  console.error(`openid_client.mjs failed: ${JSON.stringify(refusal(error))}`);
  process.exit(1);
});

const client = await load('openid-client');
const [issuerUrl, clientId, clientSecret, redirectUri, apiUrl, audience] = process.argv.slice(2);
if (!issuerUrl || !clientId || !clientSecret || !redirectUri || !apiUrl || !audience) {
  console.error('usage: node openid_client.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI API_URL AUDIENCE');
  process.exit(2);
}

// The issuer is plain http on loopback: openid-client refuses http unless allowInsecureRequests is applied.
const config = await client.discovery(new URL(issuerUrl), clientId, clientSecret, undefined, {
  execute: [client.allowInsecureRequests],
});

/** The payload of a compact JWT, decoded (the token itself is not kept in the output). */
function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** What an error thrown by openid-client says: its class, code, OAuth error, message, and the message of the
 * check that failed underneath (its cause), if any. */
function refusal(error) {
  return {
    name: error?.constructor?.name ?? typeof error,
    code: error?.code ?? null,
    error: error?.error ?? null,
    status: error?.status ?? null,
    message: String(error?.message ?? error),
    cause: error?.cause instanceof Error ? error.cause.message : null,
  };
}

/** Runs `step`; `{refused: …}` when it throws, else `{accepted: true}` (a step that must fail). */
async function mustFail(step) {
  try {
    await step();
    return { accepted: true };
  } catch (error) {
    return { refused: refusal(error) };
  }
}

/** A login as `user`: the authorization URL openid-client built, followed to the callback redirect. */
async function logIn(user, { nonce, state, codeChallenge, scope }) {
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    nonce,
    state,
    login_hint: user,
  });
  const answer = await fetch(url, { redirect: 'manual' });
  const location = answer.headers.get('location');
  if (answer.status < 300 || answer.status > 399 || !location) {
    throw new Error(`/authorize answered ${answer.status} without a redirect: ${await answer.text()}`);
  }
  return { status: answer.status, callback: new URL(location) };
}

/** A fresh login with its own PKCE verifier, nonce and state. */
async function freshLogin(scope = 'openid profile email offline_access') {
  const verifier = client.randomPKCECodeVerifier();
  const checks = { nonce: client.randomNonce(), state: client.randomState(), verifier };
  const codeChallenge = await client.calculatePKCECodeChallenge(verifier);
  const login = await logIn('alice', { nonce: checks.nonce, state: checks.state, codeChallenge, scope });
  return { ...login, checks };
}

const report = {};
const metadata = config.serverMetadata();
report.discovery = {
  issuer: metadata.issuer,
  authorization_endpoint: metadata.authorization_endpoint,
  token_endpoint: metadata.token_endpoint,
  userinfo_endpoint: metadata.userinfo_endpoint ?? null,
  end_session_endpoint: metadata.end_session_endpoint ?? null,
  revocation_endpoint: metadata.revocation_endpoint ?? null,
};

// The client credentials grant, for the API.
const machine = await client.clientCredentialsGrant(config, { audience });
report.client_credentials = {
  token_type: machine.token_type,
  expires_in: machine.expires_in,
  id_token: machine.id_token !== undefined,
  claims: claimsOf(machine.access_token),
};

// The same grant with the secret sent by HTTP Basic, form-encoded as RFC 6749 §2.3.1 says (openid-client escapes
// even the `-` of the client ID); and with a wrong secret, refused.
const basicAuth = async (secret) =>
  client.discovery(new URL(issuerUrl), clientId, undefined, client.ClientSecretBasic(secret), {
    execute: [client.allowInsecureRequests],
  });
const basic = await client.clientCredentialsGrant(await basicAuth(clientSecret), { audience });
report.client_secret_basic = { claims: claimsOf(basic.access_token) };
const wrongSecret = await basicAuth(`${clientSecret}-not`);
report.client_secret_basic.wrong_secret = await mustFail(() => client.clientCredentialsGrant(wrongSecret, { audience }));

// The authorization code flow: openid-client checks state, exchanges the code with the PKCE verifier, and
// validates the ID token (signature by the issuer's keys, iss, aud, exp, iat, nonce, at_hash when present).
const first = await freshLogin();
report.login = { authorize_status: first.status, callback_has_state: first.callback.searchParams.has('state') };
const tokens = await client.authorizationCodeGrant(config, first.callback, {
  pkceCodeVerifier: first.checks.verifier,
  expectedNonce: first.checks.nonce,
  expectedState: first.checks.state,
  idTokenExpected: true,
});
const idClaims = tokens.claims();
report.tokens = {
  token_type: tokens.token_type,
  scope: tokens.scope ?? null,
  expires_in: tokens.expires_in,
  has_refresh_token: typeof tokens.refresh_token === 'string',
  id_token_claims: idClaims,
  nonce_matches: idClaims.nonce === first.checks.nonce,
  access_token_claims: claimsOf(tokens.access_token),
};

// The demo API, with the access token.
const api = await client.fetchProtectedResource(config, tokens.access_token, new URL(apiUrl), 'GET');
report.api = { status: api.status, body: await api.json().catch(() => null) };

// userinfo: openid-client checks that its `sub` is the ID token's.
const info = await client.fetchUserInfo(config, tokens.access_token, idClaims.sub);
report.userinfo = info;

// A refresh: new tokens, and a new ID token that openid-client validates again.
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
const refreshedClaims = refreshed.claims() ?? null;
report.refresh = {
  token_type: refreshed.token_type,
  rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token,
  id_token_claims: refreshedClaims,
};

// What openid-client must refuse, each from a fresh login so that nothing else differs.
const refused = {};
{
  const login = await freshLogin();
  refused.wrong_nonce = await mustFail(() =>
    client.authorizationCodeGrant(config, login.callback, {
      pkceCodeVerifier: login.checks.verifier,
      expectedNonce: client.randomNonce(),
      expectedState: login.checks.state,
      idTokenExpected: true,
    }),
  );
}
{
  const login = await freshLogin();
  refused.wrong_state = await mustFail(() =>
    client.authorizationCodeGrant(config, login.callback, {
      pkceCodeVerifier: login.checks.verifier,
      expectedNonce: login.checks.nonce,
      expectedState: client.randomState(),
      idTokenExpected: true,
    }),
  );
}
{
  const login = await freshLogin();
  refused.wrong_verifier = await mustFail(() =>
    client.authorizationCodeGrant(config, login.callback, {
      pkceCodeVerifier: client.randomPKCECodeVerifier(),
      expectedNonce: login.checks.nonce,
      expectedState: login.checks.state,
      idTokenExpected: true,
    }),
  );
  // The same code with the right verifier: an invalid presentation used nothing up, so the exchange succeeds;
  // once more, the code is spent.
  const rightVerifier = () =>
    client.authorizationCodeGrant(config, login.callback, {
      pkceCodeVerifier: login.checks.verifier,
      expectedNonce: login.checks.nonce,
      expectedState: login.checks.state,
      idTokenExpected: true,
    });
  refused.after_wrong_verifier = await mustFail(rightVerifier);
  refused.spent_code = await mustFail(rightVerifier);
}
{
  // A code used twice: the second exchange is refused.
  const login = await freshLogin();
  const checks = {
    pkceCodeVerifier: login.checks.verifier,
    expectedNonce: login.checks.nonce,
    expectedState: login.checks.state,
    idTokenExpected: true,
  };
  await client.authorizationCodeGrant(config, login.callback, checks);
  refused.reused_code = await mustFail(() => client.authorizationCodeGrant(config, login.callback, checks));
}
// userinfo with another expected subject.
refused.userinfo_other_subject = await mustFail(() =>
  client.fetchUserInfo(config, tokens.access_token, 'auth0|somebody-else'),
);
// The replaced refresh token, after rotation: refused.
refused.old_refresh_token = await mustFail(() => client.refreshTokenGrant(config, tokens.refresh_token));
report.refused = refused;

// Revocation (RFC 7009) of a fresh family's refresh token: it cannot be used afterwards.
{
  const login = await freshLogin();
  const family = await client.authorizationCodeGrant(config, login.callback, {
    pkceCodeVerifier: login.checks.verifier,
    expectedNonce: login.checks.nonce,
    expectedState: login.checks.state,
    idTokenExpected: true,
  });
  let revoked;
  try {
    await client.tokenRevocation(config, family.refresh_token);
    revoked = { revoked: true };
  } catch (error) {
    revoked = { revoked: false, why: refusal(error) };
  }
  revoked.refresh_after = await mustFail(() => client.refreshTokenGrant(config, family.refresh_token));
  report.revocation = revoked;
}

// The end-session URL openid-client builds from discovery, for an RP-initiated logout.
if (metadata.end_session_endpoint) {
  const logout = client.buildEndSessionUrl(config, { post_logout_redirect_uri: redirectUri, state: 'bye' });
  report.end_session = { origin_and_path: `${logout.origin}${logout.pathname}` };
}

process.stdout.write(`${JSON.stringify(report)}\n`);
