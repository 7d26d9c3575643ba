// Tokens and proofs for bench/dpop.sh, made by oauth4webapi (panva) as a real DPoP client makes them.
//
//   node bench/dpop_tokens.mjs tokens ISSUER AUDIENCE DIR
//     writes DIR/bearer.txt (a client-credentials token, no binding), DIR/dpop.txt (a token bound to a fresh
//     ES256 key) and DIR/key.json (that key pair, for the proofs; bench/.work only, never committed);
//   node bench/dpop_tokens.mjs proofs URL COUNT DIR OUT
//     writes OUT: COUNT proofs by DIR/key.json for `GET URL` with DIR/dpop.txt's `ath`, each with its own jti.
//
// The proofs are captured from oauth4webapi's own protected-resource request: a fetch that keeps the DPoP header
// and sends nothing. oauth4webapi comes from $OAUTH4WEBAPI_DIR/node_modules.

import { createRequire } from 'node:module';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(join(process.env.OAUTH4WEBAPI_DIR, 'package.json'));
const oauth = await import(pathToFileURL(require.resolve('oauth4webapi')).href);
const insecure = { [oauth.allowInsecureRequests]: true };
const client = { client_id: 'demo-client' };
const [command, ...args] = process.argv.slice(2);

async function tokens(issuerUrl, audience, dir) {
  const auth = oauth.ClientSecretPost('demo-secret');
  const issuer = new URL(issuerUrl);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));
  const grant = async (options) =>
    oauth.processClientCredentialsResponse(
      as,
      client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { audience }, { ...insecure, ...options }),
    );
  const bearer = await grant({});
  const keyPair = await oauth.generateKeyPair('ES256', { extractable: true });
  const bound = await grant({ DPoP: oauth.DPoP(client, keyPair) });
  if (bound.token_type !== 'dpop') {
    throw new Error(`the issuer answered token_type ${bound.token_type}, not DPoP`);
  }
  const key = {
    privateKey: await crypto.subtle.exportKey('jwk', keyPair.privateKey),
    publicKey: await crypto.subtle.exportKey('jwk', keyPair.publicKey),
  };
  writeFileSync(join(dir, 'bearer.txt'), `${bearer.access_token}\n`);
  writeFileSync(join(dir, 'dpop.txt'), `${bound.access_token}\n`);
  writeFileSync(join(dir, 'key.json'), JSON.stringify(key), { mode: 0o600 });
}

async function proofs(target, count, dir, outPath) {
  const saved = JSON.parse(readFileSync(join(dir, 'key.json'), 'utf8'));
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const keyPair = {
    privateKey: await crypto.subtle.importKey('jwk', saved.privateKey, algorithm, false, ['sign']),
    publicKey: await crypto.subtle.importKey('jwk', saved.publicKey, algorithm, true, ['verify']),
  };
  const dpop = oauth.DPoP(client, keyPair);
  const token = readFileSync(join(dir, 'dpop.txt'), 'utf8').trim();
  let proof;
  const capture = async (_url, init) => {
    proof = init.headers.dpop;
    return new Response(null, { status: 204 });
  };
  const out = createWriteStream(outPath);
  const url = new URL(target);
  for (let i = 0; i < count; i++) {
    await oauth.protectedResourceRequest(token, 'GET', url, undefined, undefined, {
      ...insecure,
      DPoP: dpop,
      [oauth.customFetch]: capture,
    });
    if (!out.write(`${proof}\n`)) await new Promise((resolve) => out.once('drain', resolve));
  }
  await new Promise((resolve) => out.end(resolve));
}

if (command === 'tokens') {
  await tokens(...args);
} else if (command === 'proofs') {
  await proofs(args[0], Number(args[1]), args[2], args[3]);
} else {
  console.error('usage: dpop_tokens.mjs tokens ISSUER AUDIENCE DIR | proofs URL COUNT DIR OUT');
  process.exit(2);
}
