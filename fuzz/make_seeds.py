#!/usr/bin/env python3
"""Writes the committed seed corpus (fuzz/seeds/TARGET/) from the public test vectors and hand-written shapes."""
import base64
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "crates", "portcullis", "tests", "vectors")


def write(target, data):
    folder = os.path.join(HERE, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    data = data.encode() if isinstance(data, str) else data
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def b64(raw):
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


rfc = json.load(open(os.path.join(VECTORS, "rfc", "jws_examples.json")))
wycheproof = json.load(open(os.path.join(VECTORS, "wycheproof", "json_web_signature_test.json")))
tokens = [example["token"] for example in rfc if isinstance(example.get("token"), str)]
public_sets = []
for group in wycheproof["testGroups"]:
    if "public" in group:
        public_sets.append(group["public"])
    for test in group["tests"][:6]:
        if isinstance(test["jws"], str):
            tokens.append(test["jws"])
for example in rfc:
    if isinstance(example.get("jwk"), dict):
        public_sets.append({"keys": [{k: v for k, v in example["jwk"].items() if k not in ("d", "p", "q", "dp", "dq", "qi", "k")}]})

for token in tokens:
    write("token", "\x02" + token)
    header = token.split(".")[0]
    try:
        write("jose_header", b64(header))
    except ValueError:
        pass
claims = {"iss": "https://issuer.example/", "aud": ["https://api.example"], "sub": "auth0|alice",
          "iat": 1699999990, "exp": 1700003600, "nbf": 1699999990, "scope": "read write",
          "permissions": ["read:messages"], "https://example.com/roles": {"admin": [1, 2.5, None, True]}}
write("token", b"\x00" + json.dumps(claims).encode())
write("token", b"\x00" + json.dumps({**claims, "exp": "1700003600"}).encode())
write("token", b"\x01" + json.dumps({"alg": "EdDSA", "kid": "fuzz", "typ": "at+jwt", "crit": ["b64"], "b64": False}).encode())
for header in ({"alg": "none"}, {"alg": "RS256", "kid": "../../etc/passwd", "jku": "http://x/"},
               {"alg": "ES256", "typ": "application/at+jwt", "x5c": ["AA"]}):
    write("jose_header", json.dumps(header))

for keys in public_sets:
    write("jwks", json.dumps(keys))
write("jwks", json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}, {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, 7]}))

template = open(os.path.join(HERE, "..", "crates", "portcullis-gateway", "src", "template.toml")).read()
write("config", template)
write("config", "forward_auth = \"nginx\"\n[[issuers]]\nissuer = \"https://a.example/\"\naudiences = [\"x\"]\n"
      "[[routes]]\npath = \"/a/{id}\"\nrequire = { all = [{ scope = \"r\" }, { not = { claim_equals = "
      "{ claim = \"org\", value = \"x\" } } }] }\n[limits]\nmax_headers = 20\n")

token = tokens[0]
for lines in (["/auth", "X-Original-URI: /api/x?y=1", "X-Original-Method: GET", f"Authorization: Bearer {token}"],
              ["/auth", "X-Forwarded-Uri: /users/42", "X-Forwarded-Method: DELETE", "Authorization: bearer  x.y.z"],
              ["/", "X-Original-URI: /public/a#frag", "X-Request-Id: abc", "Authorization: Basic Zm9v"],
              ["/auth", "X-Original-URI: /docs/internal", "X-Original-Method: HEAD", "X_Auth_Subject: x"],
              ["/auth", "X-Original-URI: /public//../a", "X-Original-Method: GET", "Upgrade: h2c"]):
    write("forward_auth", "\n".join(lines))

write("token_request", b"\x00grant_type=client_credentials&client_id=demo-client&client_secret=wrong&audience=x")
write("token_request", b"\x01" + json.dumps({"grant_type": "authorization_code", "client_id": "demo-spa",
                                             "code": "c", "code_verifier": "v", "redirect_uri": "http://x/"}).encode())
write("token_request", b"\x04Basic ZGVtby1jbGllbnQ6bm9wZQ==\ngrant_type=refresh_token&refresh_token=r")
for target in ("/api/./x/../%61dmin?q=1", "/API//Private-Scoped/", "/public/%2e%2E/admin", "/a%2Fb;c\\d%00",
               "/caf%C3%A9/%C3", "/x./y%20/z", "/%3A%40%21?#f", "admin"):
    write("canonical", target)
for htu in ("https://API.Example.com:443/v1/./a/../%7e%41?q#f", "http://[::1]:80/", "https://u@x/", "/%2e%2e/admin",
            "/a/%2E./../b", "//evil.example/x", "/v1/orders"):
    write("dpop_proof", b"\x00" + htu.encode())
write("dpop_proof", b"\x01eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6Im5vbmUifQ.e30.")
proof_claims = {"jti": "a1", "htm": "POST", "htu": "https://api.example.com/v1/orders", "iat": 1700000000,
                "ath": base64.urlsafe_b64encode(hashlib.sha256(b"eyJhbGciOiJSUzI1NiJ9.e30.c2ln").digest()).decode().rstrip("="),
                "nonce": "x"}
write("dpop_proof", b"\x02" + json.dumps(proof_claims).encode())
write("dpop_proof", b"\x02" + json.dumps({**proof_claims, "iat": "1700000000", "jti": ""}).encode())
write("dpop_proof", b"\x02" + json.dumps({**proof_claims, "htu": "HTTPS://api.example.com:443/v1/x/../orders"}).encode())
print("seeds written to", os.path.join(HERE, "seeds"))
