// A DPoP client built on oauth4webapi (panva): gets DPoP-bound tokens from an issuer with the client credentials
// grant and calls each URL given on the command line, honestly and in tampered ways. Prints one JSON document.
//
//   node client.mjs ISSUER AUDIENCE OTHER_AUDIENCE URL...
//
// The first token is for AUDIENCE (the API called); a second one, bound to the same key, is for OTHER_AUDIENCE,
// so that it surely differs from the first: a proof made for it is then sent with the first.
//
// oauth4webapi is loaded from $PORTCULLIS_INTEROP_DIR/node_modules when that is set (where .ci/run installs it),
// else from the usual module resolution. Tokens and proofs are never printed: only statuses, challenges and
// what oauth4webapi made of them.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

async function loadOauth() {
  const dir = process.env.PORTCULLIS_INTEROP_DIR;
  if (dir) {
    const require = createRequire(join(dir, 'package.json'));
    return import(pathToFileURL(require.resolve('oauth4webapi')).href);
  }
  return import('oauth4webapi');
}

const oauth = await loadOauth();
const [issuerUrl, audience, otherAudience, ...targets] = process.argv.slice(2);
if (!issuerUrl || !audience || !otherAudience || targets.length === 0) {
  console.error('usage: node client.mjs ISSUER AUDIENCE OTHER_AUDIENCE URL...');
  process.exit(2);
}
const insecure = { [oauth.allowInsecureRequests]: true };
const client = { client_id: process.env.DPOP_CLIENT_ID ?? 'demo-client' };
const clientAuth = oauth.ClientSecretPost(process.env.DPOP_CLIENT_SECRET ?? 'demo-secret');

/** The issuer's metadata, found by OpenID Connect discovery. */
async function discover() {
  const issuer = new URL(issuerUrl);
  const response = await oauth.discoveryRequest(issuer, { ...insecure, algorithm: 'oidc' });
  return oauth.processDiscoveryResponse(issuer, response);
}

/** A token bound to `dpop`'s key, with one retry when the issuer asks for a nonce. */
async function dpopToken(as, dpop, audience) {
  const request = () =>
    oauth.clientCredentialsGrantRequest(as, client, clientAuth, { audience }, { ...insecure, DPoP: dpop });
  let response = await request();
  try {
    return await oauth.processClientCredentialsResponse(as, client, response);
  } catch (error) {
    if (!oauth.isDPoPNonceError(error)) throw error;
    response = await request();
    return oauth.processClientCredentialsResponse(as, client, response);
  }
}

/** The payload of a compact JWT, decoded (the token itself is not kept in the output). */
function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** How many times a resource asked for a fresh DPoP nonce (`use_dpop_nonce`) and the request was sent again. */
let nonceRetries = 0;

/** What one call came to: the status, the challenges as oauth4webapi parsed them, the JSON body if any, and the
 * nonce retries it took. */
async function outcome(call) {
  let response;
  let challenges = null;
  const retriesBefore = nonceRetries;
  try {
    response = await call();
  } catch (error) {
    if (!(error instanceof oauth.WWWAuthenticateChallengeError)) {
      return { error: String(error) };
    }
    response = error.response;
    challenges = error.cause;
  }
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return {
    status: response.status,
    www_authenticate: response.headers.get('www-authenticate'),
    dpop_nonce: response.headers.get('dpop-nonce') !== null,
    nonce_retries: nonceRetries - retriesBefore,
    challenges,
    body,
  };
}

/** A protected-resource request as oauth4webapi makes it, with a nonce retry like a real client does. */
async function resource(token, method, url, options) {
  try {
    return await oauth.protectedResourceRequest(token, method, url, undefined, undefined, { ...insecure, ...options });
  } catch (error) {
    if (!oauth.isDPoPNonceError(error)) throw error;
    nonceRetries += 1;
    return oauth.protectedResourceRequest(token, method, url, undefined, undefined, { ...insecure, ...options });
  }
}

const as = await discover();
const keyPair = await oauth.generateKeyPair('ES256');
const dpop = oauth.DPoP(client, keyPair);
const first = await dpopToken(as, dpop, audience);
const second = await dpopToken(as, dpop, otherAudience);
const thumbprint = await dpop.calculateThumbprint();
const otherKeys = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));

const report = {
  token_type: first.token_type,
  jkt_matches_key: claimsOf(first.access_token).cnf?.jkt === thumbprint && claimsOf(second.access_token).cnf?.jkt === thumbprint,
  tokens_differ: first.access_token !== second.access_token,
  targets: {},
};

for (const target of targets) {
  const url = new URL(target);
  const elsewhere = new URL('/elsewhere', url);
  const calls = {};
  // The request oauth4webapi makes on its own: a fresh proof with htm, htu and ath.
  calls.fresh = await outcome(() => resource(first.access_token, 'GET', url, { DPoP: dpop }));
  // A proof made for another URL (htu), sent to this one.
  calls.other_htu = await outcome(() =>
    resource(first.access_token, 'GET', elsewhere, { DPoP: dpop, [oauth.customFetch]: (_, init) => fetch(url, init) }),
  );
  // A proof made for POST, sent with GET (htm).
  calls.other_htm = await outcome(() =>
    resource(first.access_token, 'POST', url, {
      DPoP: dpop,
      [oauth.customFetch]: (input, init) => fetch(input, { ...init, method: 'GET' }),
    }),
  );
  // The same request, DPoP header and all, sent twice: the first is accepted, the replay is not.
  let replayedFirst = null;
  calls.replay = await outcome(() =>
    resource(first.access_token, 'GET', url, {
      DPoP: dpop,
      [oauth.customFetch]: async (input, init) => {
        const once = await fetch(input, init);
        replayedFirst = once.status;
        await once.arrayBuffer();
        return fetch(input, init);
      },
    }),
  );
  calls.replay.first_status = replayedFirst;
  // A proof whose ath is the hash of the second token (same key), sent with the first one.
  calls.other_token = await outcome(() =>
    resource(second.access_token, 'GET', url, {
      DPoP: dpop,
      [oauth.customFetch]: (input, init) =>
        fetch(input, { ...init, headers: { ...init.headers, authorization: `DPoP ${first.access_token}` } }),
    }),
  );
  // A valid proof by a key the token is not bound to.
  calls.other_key = await outcome(() => resource(first.access_token, 'GET', url, { DPoP: otherKeys }));
  // The bound token presented as a Bearer token, without a proof (a downgrade).
  calls.bearer = await outcome(() => resource(first.access_token, 'GET', url, {}));
  report.targets[target] = calls;
}

process.stdout.write(JSON.stringify(report));
