"""An MCP server with no authorization code of its own, for crates/portcullis-cli/tests/mcp.rs.

It is the MCP Python SDK's own streamable-HTTP server (`MCPServer(...).streamable_http_app()`, served by uvicorn)
with two tools: `add(a, b)` and `whoami`, which answers with the identity headers `portcullis serve` sets after
verifying the caller's token. `portcullis serve` in front of it does all of the OAuth work.

Usage: python3 server.py PORT   (0 picks a free port)

It listens on 127.0.0.1 and prints `mcp server listening on http://127.0.0.1:PORT/mcp` once the socket accepts
connections (uvicorn starts serving it right after; connections made earlier wait in the listen queue).
"""

import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("portcullis-mcp-test")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def whoami(ctx: Context) -> dict:
    """The caller as the gateway in front described it, and whether a token reached this server."""
    headers = ctx.headers or {}
    return {
        "subject": headers.get("x-auth-subject"),
        "issuer": headers.get("x-auth-issuer"),
        "authorization_reached_upstream": "authorization" in headers,
    }


async def main(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    bound = listener.getsockname()[1]
    app = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"mcp server listening on http://127.0.0.1:{bound}/mcp", flush=True)
    await uvicorn.Server(config).serve(sockets=[listener])


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: server.py PORT")
    anyio.run(main, int(sys.argv[1]))
