// A regular web application on Express with Auth0's express-openid-connect, configured as the SDK's own docs
// say, against the issuer at $ISSUER_BASE_URL. Listens on a free loopback port and prints
//
//   express-openid-connect app listening at http://127.0.0.1:PORT
//
// once it answers requests.
//
//   node app.mjs MODE LOGOUT
//
// MODE `default`: the SDK's default login (response_type id_token, response_mode form_post, a nonce), settings
// issuerBaseURL, baseURL, clientID, secret. MODE `code`: response_type code with the client secret
// (clientSecret), which also gets an access token and a refresh token.
// LOGOUT `auth0`: `auth0Logout: true` (the SDK sends the browser to the issuer's /v2/logout). LOGOUT `idp`:
// `idpLogout: true` (the discovery document's end_session_endpoint, OpenID RP-Initiated Logout).
//
// Environment: ISSUER_BASE_URL, CLIENT_ID, SECRET (the SDK's cookie secret), CLIENT_SECRET (code mode), API_URL
// (code mode: an API the /api route calls with the access token).
//
// Routes: `/` (public: whether logged in, and the user), `/profile` (requiresAuth: the user and the ID token's
// claims), `/userinfo` (requiresAuth: the SDK's fetchUserInfo), `/api` (requiresAuth, code mode: API_URL called
// with the access token), and the SDK's own `/login`, `/callback`, `/logout`.
//
// express and express-openid-connect are loaded from $PORTCULLIS_INTEROP_DIR/node_modules when that is set (where
// .ci/run installs them), else from the usual module resolution.

import { createServer } from 'node:http';
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

const { default: express } = await load('express');
// A CommonJS package: its exports are the module's default export.
const sdk = await load('express-openid-connect');
const { auth, requiresAuth } = sdk.default ?? sdk;

const [mode, logout] = process.argv.slice(2);
if (!['default', 'code'].includes(mode) || !['auth0', 'idp'].includes(logout)) {
  console.error('usage: node app.mjs default|code auth0|idp');
  process.exit(2);
}

/** The SDK's settings for this mode, as its docs give them. */
function settings(baseURL) {
  const common = {
    issuerBaseURL: process.env.ISSUER_BASE_URL,
    baseURL,
    clientID: process.env.CLIENT_ID,
    secret: process.env.SECRET,
    // Public routes stay public; requiresAuth() guards the others.
    authRequired: false,
  };
  const loggingOut = logout === 'auth0' ? { auth0Logout: true } : { idpLogout: true };
  if (mode === 'code') {
    return {
      ...common,
      clientSecret: process.env.CLIENT_SECRET,
      authorizationParams: { response_type: 'code' },
      ...loggingOut,
    };
  }
  return { ...common, ...loggingOut };
}

function app(baseURL) {
  const app = express();
  app.use(auth(settings(baseURL)));
  app.get('/', (req, res) => {
    res.json({ authenticated: req.oidc.isAuthenticated(), user: req.oidc.user ?? null });
  });
  app.get('/profile', requiresAuth(), (req, res) => {
    res.json({
      user: req.oidc.user,
      id_token_claims: req.oidc.idTokenClaims,
      has_access_token: req.oidc.accessToken !== undefined,
      has_refresh_token: req.oidc.refreshToken !== undefined,
    });
  });
  app.get('/userinfo', requiresAuth(), async (req, res, next) => {
    try {
      res.json(await req.oidc.fetchUserInfo());
    } catch (error) {
      next(error);
    }
  });
  app.get('/api', requiresAuth(), async (req, res, next) => {
    try {
      const { token_type, access_token } = req.oidc.accessToken;
      const answer = await fetch(process.env.API_URL, { headers: { authorization: `${token_type} ${access_token}` } });
      res.json({ status: answer.status, body: await answer.json().catch(() => null) });
    } catch (error) {
      next(error);
    }
  });
  // Errors as JSON, without the stack: what the SDK refused and why, with the issuer's OAuth error if it sent one.
  app.use((error, req, res, next) => {
    res.status(error.status ?? 500).json({
      error: error.name,
      code: error.code ?? null,
      message: error.message,
      oauth_error: error.error ?? null,
      error_description: error.error_description ?? null,
    });
  });
  return app;
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const baseURL = `http://127.0.0.1:${server.address().port}`;
  server.on('request', app(baseURL));
  console.log(`express-openid-connect app listening at ${baseURL} (${mode} login, ${logout} logout)`);
});
