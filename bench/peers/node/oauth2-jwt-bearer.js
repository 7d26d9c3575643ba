// Auth0's express-oauth2-jwt-bearer, configured with the issuer, audience and JWKS URL.
const express = require('express');
const { auth } = require('express-oauth2-jwt-bearer');

const app = express();
const checkJwt = auth({
  issuer: process.env.ISSUER,
  audience: process.env.AUDIENCE,
  jwksUri: process.env.JWKS_URI,
  tokenSigningAlg: 'RS256',
});

app.get('/api/protected', checkJwt, (req, res) => {
  res.json({ message: 'You made it to the protected endpoint!', user: req.auth.payload });
});

const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`express-oauth2-jwt-bearer listening on http://127.0.0.1:${server.address().port}`);
});
