// An Express API with no authentication code of its own: portcullis runs in front of it and passes the verified
// token's claims as headers. It must only be reachable through the gateway (bind it to a private address).
const express = require('express');

const app = express();

// The gateway removes client-sent copies of these headers and sets them from the verified token.
function caller(req) {
  return {
    subject: req.get('X-Auth-Subject') || null,
    scope: req.get('X-Auth-Scope') || null,
    permissions: req.get('X-Auth-Permissions') || null,
  };
}

app.get('/api/public', (req, res) => {
  res.json({ message: 'Hello from a public endpoint! You don\'t need to be authenticated to see this.' });
});

app.get('/api/private', (req, res) => {
  res.json({ message: 'Hello from a private endpoint! You need to be authenticated to see this.', caller: caller(req) });
});

app.get('/api/private-scoped', (req, res) => {
  res.json({
    message: 'Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this.',
    caller: caller(req),
  });
});

const port = Number(process.env.PORT || 3000);
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`express API listening on http://127.0.0.1:${server.address().port}`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
