// The classic Node stack (Auth0's Express API article): express-jwt 8 + jwks-rsa with cache and rate limiting.
const express = require('express');
const { expressjwt: jwt } = require('express-jwt');
const jwksRsa = require('jwks-rsa');

const app = express();
const checkJwt = jwt({
  secret: jwksRsa.expressJwtSecret({
    cache: true,
    rateLimit: true,
    jwksRequestsPerMinute: 5,
    jwksUri: process.env.JWKS_URI,
  }),
  audience: process.env.AUDIENCE,
  issuer: process.env.ISSUER,
  algorithms: ['RS256'],
});

app.get('/api/protected', checkJwt, (req, res) => {
  res.json({ message: 'You made it to the protected endpoint!', user: req.auth });
});
app.use((err, req, res, next) => {
  res.status(err.status || 500).json({ message: err.message });
});

const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`express-jwt listening on http://127.0.0.1:${server.address().port}`);
});
