"""The MCP Python SDK's OAuth client against an MCP server behind `portcullis serve`, for
crates/portcullis-cli/tests/mcp.rs.

Usage: python3 client.py MCP_URL USER MODE

MODE is the SDK's connection mode: `legacy` (the `initialize` handshake of the released protocol versions, whose
answers are Server-Sent Events streams) or `auto` (the SDK's default: it probes `server/discover` first).

The SDK does the whole MCP authorization flow itself (`mcp.client.auth.OAuthClientProvider`): its first request is
refused with 401, it reads `resource_metadata` from the challenge, fetches the protected-resource document (RFC
9728) and the authorization server's metadata (RFC 8414), registers itself (RFC 7591), sends the user to the
authorization endpoint with PKCE and `resource` (RFC 8707), exchanges the code and retries with the token. What a
browser would do in between is done here over plain HTTP: the redirect handler loads the dev issuer's login page,
submits its form as USER and takes `code`, `state` and `iss` from the redirect to the (never contacted) callback.

Then it calls the `whoami` and `add` tools and prints one JSON object on stdout: the tool results, every HTTP
exchange the SDK made (method, URL without query, status, content type, challenge, and for authorization and token
requests the parameter names and the `resource` value), the registered client, and the access token's claims
(`aud`, `azp`/`client_id`, `sub`, `scope`), never the token itself. Any failure exits non-zero with the reason.
"""

import base64
import json
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

# A loopback redirect URI, as a native client registers one (RFC 8252 §7.3). Nothing listens there: the redirect
# handler reads the authorization response from the Location header instead of following it.
REDIRECT_URI = "http://127.0.0.1:8765/callback"


class MemoryStorage(TokenStorage):
    """Tokens and the registration in memory, for one run."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class LoginForm(HTMLParser):
    """The first form of a page: its method and action, hidden fields, and the values of its submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.method: str | None = None
        self.action: str | None = None
        self.hidden: list[tuple[str, str]] = []
        self.buttons: dict[str, list[str]] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "form" and not self._done and self.action is None:
            self._in_form = True
            self.method = a.get("method", "get").lower()
            self.action = a.get("action", "")
        elif self._in_form and tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.hidden.append((a["name"], a.get("value", "")))
        elif self._in_form and tag == "button" and a.get("type", "submit") == "submit" and a.get("name"):
            self.buttons.setdefault(a["name"], []).append(a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def parameters(pairs: dict[str, list[str]]) -> dict:
    """What the log keeps of an OAuth request's parameters: their names, and `resource` and a few harmless values."""
    kept = {"names": sorted(pairs)}
    for name in ("resource", "grant_type", "code_challenge_method", "response_type", "scope"):
        if name in pairs:
            kept[name] = pairs[name] if len(pairs[name]) != 1 else pairs[name][0]
    return kept


class Recorder:
    """Every exchange of the SDK's HTTP client, in order."""

    def __init__(self) -> None:
        self.exchanges: list[dict] = []

    async def on_request(self, request: httpx2.Request) -> None:
        entry: dict = {"method": request.method, "url": without_query(str(request.url))}
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
            entry["form"] = parameters(parse_qs(request.content.decode(), keep_blank_values=True))
        elif request.method == "POST" and content_type.startswith("application/json"):
            message = json.loads(request.content)
            if isinstance(message, dict) and "method" in message:
                entry["rpc"] = message["method"]
        entry["authorization"] = request.headers.get("authorization", "").split(" ")[0] or None
        self.exchanges.append(entry)

    async def on_response(self, response: httpx2.Response) -> None:
        for entry in reversed(self.exchanges):
            if "status" not in entry and entry["url"] == without_query(str(response.request.url)):
                entry["status"] = response.status_code
                entry["content_type"] = response.headers.get("content-type")
                challenges = response.headers.get_list("www-authenticate")
                if challenges:
                    entry["www_authenticate"] = challenges
                break


class Browser:
    """What a user's browser does between the SDK's redirect handler and its callback handler."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.result: AuthorizationCodeResult | None = None
        self.steps: list[dict] = []

    async def redirect(self, authorization_url: str) -> None:
        self.steps.append({"authorize": parameters(parse_qs(urlsplit(authorization_url).query))})
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            page = await http.get(authorization_url)
            if page.status_code != 200:
                raise SystemExit(f"the login page answered {page.status_code}: {page.text[:500]}")
            form = LoginForm()
            form.feed(page.text)
            if form.action is None or form.method != "post":
                raise SystemExit(f"no POST form on the login page: {page.text[:500]}")
            users = form.buttons.get("user", [])
            if self.user not in users:
                raise SystemExit(f"the login page offers no button for {self.user!r} (offers {users})")
            body = urlencode(form.hidden + [("user", self.user)])
            answer = await http.post(
                urljoin(str(page.url), form.action),
                content=body,
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            self.steps.append({"login": {"status": answer.status_code, "users": users}})
            location = answer.headers.get("location")
            if answer.status_code not in (302, 303) or location is None:
                raise SystemExit(f"logging in answered {answer.status_code} without a redirect: {answer.text[:500]}")
            if without_query(location) != REDIRECT_URI:
                raise SystemExit(f"the login redirected to {without_query(location)}, not the registered callback")
            query = parse_qs(urlsplit(location).query)
            if "error" in query:
                raise SystemExit(f"the authorization server answered an error: {query}")
            code, state, iss = (query.get(name, [None])[0] for name in ("code", "state", "iss"))
            self.result = AuthorizationCodeResult(code=code, state=state, iss=iss)

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise SystemExit("the callback came before the authorization response")
        return self.result


def claims_of(token: str) -> dict:
    """The claims of a JWT (decoded, not verified: the gateway verified it), without the token."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {name: claims.get(name) for name in ("iss", "aud", "sub", "azp", "client_id", "scope")}


def text_of(result) -> str:
    if result.is_error:
        raise SystemExit(f"the tool call failed: {result.content}")
    return "".join(part.text for part in result.content if part.type == "text")


async def main(url: str, user: str, mode: str) -> None:
    storage = MemoryStorage()
    browser = Browser(user)
    recorder = Recorder()
    oauth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="portcullis MCP interop test",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    http = httpx2.AsyncClient(
        auth=oauth,
        timeout=httpx2.Timeout(30.0, read=60.0),
        event_hooks={"request": [recorder.on_request], "response": [recorder.on_response]},
    )
    transport = streamable_http_client(url, http_client=http)
    async with http:
        async with Client(transport, mode=mode, raise_exceptions=True) as client:
            whoami = json.loads(text_of(await client.call_tool("whoami", {})))
            added = text_of(await client.call_tool("add", {"a": 20, "b": 22}))
    registered = storage.client_info
    report = {
        "whoami": whoami,
        "add": added,
        "exchanges": recorder.exchanges,
        "browser": browser.steps,
        "client": None
        if registered is None
        else {
            "client_id": registered.client_id,
            "token_endpoint_auth_method": registered.token_endpoint_auth_method,
        },
        "token": None if storage.tokens is None else claims_of(storage.tokens.access_token),
        "token_type": None if storage.tokens is None else storage.tokens.token_type,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("legacy", "auto"):
        sys.exit("usage: client.py MCP_URL USER legacy|auto")
    anyio.run(main, *sys.argv[1:])
