#!/usr/bin/env python3
"""The strictness corpus for the Pingora prototype: smuggling, limits, path and host cases sent as exact bytes to
`portcullis serve` and to `portcullis-pingora`, both in front of the same raw-socket echo upstream, with the same
configuration and the same token.

For every case it records what the client got back (each status line, or that the connection closed or went
silent) and what the upstream received (each request line, and the headers the case watches), and writes the
side-by-side table as Markdown.

Run it all (starts the dev issuer, both proxies and the upstream; python3 stdlib only):

    python3 bench/pingora/corpus.py --portcullis target/release/portcullis \
        --pingora /work/pingora-target/release/portcullis-pingora --out bench/pingora/CORPUS.md

or against proxies already running in front of this script's upstream (`--upstream-port`, which their
configuration names) with a token:

    python3 bench/pingora/corpus.py --proxy serve=127.0.0.1:8001 --proxy pingora=127.0.0.1:8002 \
        --upstream-port 9000 --token "$TOKEN"

Traffic stays on 127.0.0.1.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

AUDIENCE = "https://api.example.com"

# ---------------------------------------------------------------------------------------------------------------
# The echo upstream: logs the exact bytes of every request it reads, answers 200 with a small JSON body (or, for
# the response-side cases, a malformed answer), keeps connections alive.
# ---------------------------------------------------------------------------------------------------------------


class Upstream:
    def __init__(self, port):
        self.records = []
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(128)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def clear(self):
        with self.lock:
            self.records.clear()

    def taken(self):
        with self.lock:
            return list(self.records)

    def _accept(self):
        while True:
            connection, _ = self.server.accept()
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        connection.settimeout(30)
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
                    data = connection.recv(65536)
                    if not data:
                        return
                    buffer += data
                end = min(i + len(m) for m in (b"\r\n\r\n", b"\n\n") if (i := buffer.find(m)) >= 0)
                head, buffer = buffer[:end], buffer[end:]
                lines = re.split(rb"\r?\n", head.rstrip(b"\r\n"))
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
                record = {"line": lines[0].decode("latin-1"), "headers": headers, "body": b"", "framing": "unreadable"}
                with self.lock:
                    self.records.append(record)
                body, buffer, framing = self._body(connection, headers, buffer)
                with self.lock:
                    record.update(body=body, framing=framing)
                target = lines[0].split(b" ")[1] if b" " in lines[0] else b""
                connection.sendall(self._answer(target))
                if any(n == "connection" and "close" in v.lower() for n, v in headers):
                    return
        except (OSError, ValueError):
            return
        finally:
            connection.close()

    def _recv_until(self, connection, buffer, size):
        while len(buffer) < size:
            data = connection.recv(65536)
            if not data:
                raise ValueError("closed in a body")
            buffer += data
        return buffer

    def _body(self, connection, headers, buffer):
        te = [v for n, v in headers if n == "transfer-encoding"]
        cl = [v for n, v in headers if n == "content-length"]
        if te and te[-1].lower().endswith("chunked"):
            body = b""
            while True:
                while b"\r\n" not in buffer:
                    buffer = self._recv_until(connection, buffer, len(buffer) + 1)
                size_line, buffer = buffer.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while not buffer.startswith(b"\r\n"):
                        if b"\r\n" in buffer:
                            buffer = buffer.split(b"\r\n", 1)[1]  # a trailer field
                        else:
                            buffer = self._recv_until(connection, buffer, len(buffer) + 1)
                    return body, buffer[2:], "chunked"
                buffer = self._recv_until(connection, buffer, size + 2)
                body, buffer = body + buffer[:size], buffer[size + 2:]
        if cl:
            size = int(cl[0].split(",")[0])
            buffer = self._recv_until(connection, buffer, size)
            return buffer[:size], buffer[size:], "length"
        return b"", buffer, "none"

    @staticmethod
    def _answer(target):
        body = b'{"upstream":"echo"}'
        if target.endswith(b"/bad/two-cl"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\nContent-Length: 60\r\n\r\n" + body
        if target.endswith(b"/bad/cl-te"):
            smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!"
            chunked = b"13\r\n" + body + b"\r\n0\r\n\r\n"
            return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(chunked)
                    + chunked + smuggled)
        if target.endswith(b"/bad/chunk-size"):
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + body + b"\r\n0\r\n\r\n"
        if target.endswith(b"/bad/header-space"):
            return b"HTTP/1.1 200 OK\r\nContent-Length : 19\r\n\r\n" + body
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body


# ---------------------------------------------------------------------------------------------------------------
# The cases. `{auth}` is an Authorization line with the valid token, `{host}` the proxy's address. Every request
# without its own Connection header asks for Connection: close, so that the answer ends with the connection.
# ---------------------------------------------------------------------------------------------------------------

SMUGGLED = "GET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


def get(target, extra="", method="GET", version="HTTP/1.1", host=True, close=True):
    head = f"{method} {target} {version}\r\n"
    if host:
        head += "Host: {host}\r\n"
    head += extra
    if close:
        head += "Connection: close\r\n"
    return head + "\r\n"


def post(target, headers, body, auth=False):
    return get(target, ("{auth}" if auth else "") + headers, method="POST") + body


def chunked(size_line, data="hello", rest="\r\n0\r\n\r\n"):
    return post("/public/x", "Transfer-Encoding: chunked\r\n", f"{size_line}\r\n{data}{rest}")


AFTER = get("/api/bad/{}", "{{auth}}", close=False).replace("{host}", "{{host}}") + get("/api/after", "{{auth}}").replace(
    "{host}", "{{host}}")

CASES = [
    # (group, name, request, headers the upstream view shows)
    ("control", "valid token, GET /api/protected", get("/api/protected", "{auth}"), ["x-auth-subject"]),
    ("control", "no token, GET /api/protected", get("/api/protected"), []),
    ("control", "public route, GET /public/x", get("/public/x"), []),
    ("framing", "CL + TE together (CL.TE smuggle on a public route)",
     post("/public/x", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n" + SMUGGLED),
     ["content-length", "transfer-encoding"]),
    ("framing", "TE + CL together, TE first, with a token",
     post("/api/x", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "5\r\nhello\r\n0\r\n\r\n", auth=True),
     ["content-length", "transfer-encoding"]),
    ("framing", "two different Content-Length",
     post("/public/x", "Content-Length: 5\r\nContent-Length: 44\r\n", "hello" + SMUGGLED), ["content-length"]),
    ("framing", "Content-Length: 5, 5 (one value listed twice)",
     post("/public/x", "Content-Length: 5, 5\r\n", "hello"), ["content-length"]),
    ("framing", "Content-Length: +5", post("/public/x", "Content-Length: +5\r\n", "hello"), ["content-length"]),
    ("framing", "Content-Length: -1", post("/public/x", "Content-Length: -1\r\n", "hello"), ["content-length"]),
    ("framing", "Content-Length: 0x5", post("/public/x", "Content-Length: 0x5\r\n", "hello"), ["content-length"]),
    ("framing", "Transfer-Encoding: chunked, identity",
     post("/public/x", "Transfer-Encoding: chunked, identity\r\n", "5\r\nhello\r\n0\r\n\r\n"),
     ["transfer-encoding", "content-length"]),
    ("framing", "Transfer-Encoding: identity, chunked",
     post("/public/x", "Transfer-Encoding: identity, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
     ["transfer-encoding", "content-length"]),
    ("framing", "Transfer-Encoding: xchunked",
     post("/public/x", "Transfer-Encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
     ["transfer-encoding", "content-length"]),
    ("framing", "Transfer-Encoding:  chunked (two spaces)",
     post("/public/x", "Transfer-Encoding:  chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), ["transfer-encoding"]),
    ("framing", "Transfer-Encoding:\\tchunked (tab)",
     post("/public/x", "Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), ["transfer-encoding"]),
    ("framing", "Transfer-Encoding : chunked (space before the colon)",
     post("/public/x", "Transfer-Encoding : chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), ["transfer-encoding"]),
    ("framing", "Transfer-Encoding: chunked\\x0b (vertical tab)",
     post("/public/x", "Transfer-Encoding: chunked\x0b\r\n", "5\r\nhello\r\n0\r\n\r\n"), ["transfer-encoding"]),
    ("framing", "Transfer-Encoding twice (identity, then chunked)",
     post("/public/x", "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
     ["transfer-encoding"]),
    ("framing", "Transfer-Encoding: chunked on HTTP/1.0",
     "POST /public/x HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     ["transfer-encoding"]),
    ("framing", "obsolete line folding (X-Note: a / SP b)", get("/public/x", "X-Note: a\r\n b\r\n"), ["x-note"]),
    ("framing", "obsolete line folding of Transfer-Encoding",
     post("/public/x", "Transfer-Encoding:\r\n chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), ["transfer-encoding"]),
    ("framing", "bare CR inside a header value", get("/public/x", "X-Note: a\rb\r\n"), ["x-note"]),
    ("framing", "bare LF line endings throughout",
     "GET /public/x HTTP/1.1\nHost: {host}\nX-Note: lf\nConnection: close\n\n", ["x-note"]),
    ("framing", "bare LF ending one header line", get("/public/x", "X-Note: lf\nX-Other: 1\r\n"), ["x-note", "x-other"]),
    ("framing", "header name with a space (X Note: a)", get("/public/x", "X Note: a\r\n"), []),
    ("framing", "NUL byte in a header value", get("/public/x", "X-Note: a\x00b\r\n"), ["x-note"]),
    ("chunks", "chunk size zz", chunked("zz"), ["transfer-encoding"]),
    ("chunks", "chunk size -5", chunked("-5"), ["transfer-encoding"]),
    ("chunks", "chunk size 0x5", chunked("0x5"), ["transfer-encoding"]),
    ("chunks", "chunk size with 17 hex digits (overflow)", chunked("00000000000000005"), ["transfer-encoding"]),
    ("chunks", "chunk size fffffffffffffffff (overflow)", chunked("fffffffffffffffff"), ["transfer-encoding"]),
    ("chunks", "chunk size '5 ' (trailing space)", chunked("5 "), ["transfer-encoding"]),
    ("chunks", "chunk extension 5;ext=1 (valid)", chunked("5;ext=1"), ["transfer-encoding"]),
    ("chunks", "chunk extension with a bare LF inside", chunked("5;a\nb"), ["transfer-encoding"]),
    ("chunks", "chunk lines ended by LF only",
     post("/public/x", "Transfer-Encoding: chunked\r\n", "5\nhello\n0\n\n"), ["transfer-encoding"]),
    ("chunks", "chunk data longer than its size", chunked("3", "hello"), ["transfer-encoding"]),
    ("target", "NUL byte in the target", get("/public/a\x00b"), []),
    ("target", "control byte 0x01 in the target", get("/public/a\x01b"), []),
    ("target", "DEL 0x7f in the target", get("/public/a\x7fb"), []),
    ("target", "space inside the target (GET /public/a b HTTP/1.1)", get("/public/a b"), []),
    ("target", "raw UTF-8 é in the target", get("/public/caf\u00e9"), []),
    ("target", "raw byte 0xff in the target", get("/public/a\udcffb"), []),
    ("target", "request line over 8 KiB (9,000-byte path)", get("/public/" + "a" * 9000), []),
    ("target", "request line over 64 KiB (70,000-byte path)", get("/public/" + "a" * 70000), []),
    ("target", "absolute-form target naming another host", get("http://other.example/public/x"), []),
    ("target", "absolute-form target, same host as Host", get("http://{host}/public/x"), ["host"]),
    ("target", "absolute-form target with user information", get("http://u@{host}/public/x"), []),
    ("target", "asterisk-form OPTIONS *", get("*", method="OPTIONS"), []),
    ("target", "authority-form CONNECT", get("{host}", method="CONNECT"), []),
    ("target", "fragment in the target (/public/x#f)", get("/public/x#f"), []),
    ("path", "%2F inside a segment (/public/a%2Fb)", get("/public/a%2Fb"), []),
    ("path", "%5C inside a segment (/public/a%5Cb)", get("/public/a%5Cb"), []),
    ("path", "raw backslash (/public\\..\\api\\x)", get("/public\\..\\api\\x"), []),
    ("path", "/public/../api/x without a token", get("/public/../api/x"), []),
    ("path", "/public/%2e%2e/api/x without a token", get("/public/%2e%2e/api/x"), []),
    ("path", "/public/..%2fapi/x without a token", get("/public/..%2fapi/x"), []),
    ("path", "overlong UTF-8 dots /public/%c0%ae%c0%ae/api/x", get("/public/%c0%ae%c0%ae/api/x"), []),
    ("path", "//api/x with a token (repeated slash)", get("//api/x", "{auth}"), []),
    ("path", "/api/./x with a token (dot segment)", get("/api/./x", "{auth}"), []),
    ("path", "/API/%78 with a token (case, encoded letter)", get("/API/%78", "{auth}"), []),
    ("path", "matrix parameter /public/a;jsessionid=1", get("/public/a;jsessionid=1"), []),
    ("path", "%00 in the path", get("/public/a%00b"), []),
    ("path", "double encoding %252e%252e", get("/public/%252e%252e/api/x"), []),
    ("path", "broken UTF-8 %C3 alone", get("/public/%C3"), []),
    ("path", "raw | in the path (browsers send it)", get("/public/a|b"), []),
    ("path", "control byte in the query", get("/public/x?a=\x01"), []),
    ("host", "Host twice, same value", get("/public/x", "Host: {host}\r\n"), ["host"]),
    ("host", "Host twice, different values", get("/public/x", "Host: other.example\r\n"), ["host"]),
    ("host", "HTTP/1.1 without Host", get("/public/x", host=False), ["host"]),
    ("host", "HTTP/1.0 without Host", get("/public/x", version="HTTP/1.0", host=False), ["host"]),
    ("host", "Host with user information (u@host)",
     "GET /public/x HTTP/1.1\r\nHost: u@{host}\r\nConnection: close\r\n\r\n", ["host"]),
    ("host", "Host that is a list (a, b)", "GET /public/x HTTP/1.1\r\nHost: a, b\r\nConnection: close\r\n\r\n",
     ["host"]),
    ("host", "empty Host", "GET /public/x HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n", ["host"]),
    ("limits", "100 extra headers (101 with Host)",
     get("/public/x", "".join(f"X-H{i}: v\r\n" for i in range(100))), []),
    ("limits", "300 extra headers", get("/public/x", "".join(f"X-H{i}: v\r\n" for i in range(300))), []),
    ("limits", "64 KiB of headers (8 x 8 KiB)", get("/public/x", "".join(f"X-B{i}: {'b' * 8192}\r\n" for i in range(8))),
     []),
    ("limits", "one 40 KiB header value", get("/public/x", f"X-Big: {'b' * 40960}\r\n"), []),
    ("headers", "client copies of claim headers (X-Auth-Subject, x_auth_subject)",
     get("/api/x", "{auth}X-Auth-Subject: admin\r\nx_auth_subject: admin\r\nX-AUTH-SCOPE: admin\r\n"),
     ["x-auth-subject", "x_auth_subject", "x-auth-scope"]),
    ("headers", "client X-Forwarded-For / -Host / Forwarded",
     get("/public/x", "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\n"),
     ["x-forwarded-for", "x-forwarded-host", "forwarded"]),
    ("headers", "path override X-Original-URL: /api/admin",
     get("/public/x", "X-Original-URL: /api/admin\r\nX-HTTP-Method-Override: DELETE\r\n"),
     ["x-original-url", "x-http-method-override"]),
    ("headers", "Authorization is not forwarded", get("/api/x", "{auth}"), ["authorization"]),
    ("headers", "Connection: close, X-Keep (a header made hop-by-hop)",
     get("/api/x", "{auth}Connection: close, X-Keep\r\nX-Keep: 1\r\n", close=False), ["x-keep", "x-auth-subject"]),
    ("headers", "Upgrade: h2c on a public route",
     get("/public/x", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
         close=False), ["upgrade", "http2-settings", "connection"]),
    ("desync", "pipelined: refused GET, then a public GET",
     get("/api/x", close=False) + get("/public/second"), []),
    ("desync", "pipelined: refused POST whose body is a request, then a public GET",
     get("/api/x", "Content-Length: %d\r\n" % len(SMUGGLED), method="POST", close=False) + SMUGGLED
     + get("/public/second"), []),
    ("desync", "pipelined: allowed GET, then the same without a token",
     get("/api/first", "{auth}", close=False) + get("/api/second"), []),
    ("desync", "pipelined: CL+TE request, then a public GET",
     get("/public/x", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", method="POST", close=False)
     + "0\r\n\r\n" + SMUGGLED + get("/public/second"), []),
    ("desync", "keep-alive: refused POST whose body is a request, then (after the answer) a public GET",
     [get("/api/x", "Content-Length: %d\r\n" % len(SMUGGLED), method="POST", close=False) + SMUGGLED,
      get("/public/second")], []),
    ("desync", "keep-alive: refused POST with 100 KiB of body, then (after the answer) a public GET",
     [get("/api/x", "Content-Length: 102400\r\n", method="POST", close=False) + "a" * 102400,
      get("/public/second")], []),
    ("desync", "keep-alive: allowed GET, then (after the answer) a GET without a token",
     [get("/api/first", "{auth}", close=False), get("/api/second")], []),
    ("desync", "keep-alive: refused GET, then (after the answer) an allowed GET",
     [get("/api/first", close=False), get("/api/second", "{auth}")], []),
    ("desync", "refused POST with Expect: 100-continue, body never sent",
     get("/api/x", "Content-Length: 5\r\nExpect: 100-continue\r\n", method="POST"), []),
    # Each response-side case is followed by a second request on the same client connection: an answer the proxy
    # framed differently from the upstream would leave bytes that become the second request's answer.
    ("response", "upstream answers with two Content-Length", AFTER.format("two-cl"), []),
    ("response", "upstream answers with CL + TE (and extra bytes)", AFTER.format("cl-te"), []),
    ("response", "upstream answers with chunk size zz", AFTER.format("chunk-size"), []),
    ("response", "upstream answers 'Content-Length : 19'", AFTER.format("header-space"), []),
]


# ---------------------------------------------------------------------------------------------------------------
# Sending a case and describing what happened.
# ---------------------------------------------------------------------------------------------------------------


def send(address, payloads, quiet=1.5, total=6.0, between=0.7):
    """Sends `payloads` on one connection, each after the answer to the one before (a pause of `between` seconds
    without new bytes); returns (bytes received, how it ended)."""
    host, port = address.rsplit(":", 1)
    received = b""
    with socket.create_connection((host, int(port)), timeout=total) as connection:
        for number, payload in enumerate(payloads):
            last = number == len(payloads) - 1
            try:
                connection.sendall(payload)
            except OSError as error:
                return received, f"closed before request {number + 1} ({error.__class__.__name__})"
            connection.settimeout(quiet if last else between)
            deadline = time.monotonic() + total
            while time.monotonic() < deadline:
                try:
                    data = connection.recv(65536)
                except socket.timeout:
                    if last:
                        return received, "open"
                    break
                except ConnectionResetError:
                    return received, "reset" if last else f"reset before request {number + 2}"
                if not data:
                    return received, "closed" if last else f"closed before request {number + 2}"
                received += data
    return received, "open"


def responses(received):
    """The responses in `received`, read one after the other by their framing: a list of (status, reason code
    from a JSON body or None, whether the message was complete), and the bytes left over."""
    found = []
    rest = received
    while rest:
        head_end = rest.find(b"\r\n\r\n")
        match = re.match(rb"HTTP/1\.[01] (\d{3})", rest)
        if not match or head_end < 0:
            break
        status = int(match.group(1))
        fields = {}
        for line in rest[:head_end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields.setdefault(name.strip().lower(), []).append(value.strip())
        rest = rest[head_end + 4:]
        if 100 <= status < 200 and status != 101:
            found.append((status, None, True))
            continue
        if status in (101, 204, 304):
            found.append((status, None, True))
            if status == 101:
                break  # what follows is the switched protocol
            continue
        body, complete = b"", True
        if b"chunked" in b",".join(fields.get(b"transfer-encoding", [])).lower():
            while True:
                line_end = rest.find(b"\r\n")
                try:
                    size = int(rest[:line_end].split(b";")[0], 16) if line_end >= 0 else -1
                except ValueError:
                    size = -1
                if size < 0 or len(rest) < line_end + 2 + size + 2:
                    complete, rest = False, b""
                    break
                body += rest[line_end + 2:line_end + 2 + size]
                rest = rest[line_end + 2 + size + 2:]
                if size == 0:
                    break
        elif b"content-length" in fields:
            try:
                size = int(fields[b"content-length"][0])
            except ValueError:
                size = len(rest)
            body, rest = rest[:size], rest[size:]
            complete = len(body) == size
        else:
            body, rest = rest, b""
        reason = None
        try:
            reason = json.loads(body).get("reason")
        except (ValueError, AttributeError):
            pass
        found.append((status, reason, complete))
    return found, rest


def client_view(received, ended):
    found, rest = responses(received)
    shown = []
    for status, reason, complete in found:
        text = str(status) + (f" {reason}" if reason else "")
        shown.append(text + ("" if complete else " (body cut short)"))
    text = " + ".join(shown) if shown else "no answer"
    if rest:
        text += f" + {len(rest)} unframed bytes"
    if ended != "closed" or not shown:
        text += f" ({ended})"
    if b"smuggled!" in received:
        text += ", **smuggled body reached the client**"
    return text


def upstream_view(records, watched, address):
    if not records:
        return "—"
    parts = []
    for record in records:
        line = record["line"]
        method_target = " ".join(line.split(" ")[:2])
        shown = f"`{escape(method_target)}`"
        notes = []
        for name in watched:
            values = [v for n, v in record["headers"] if n == name]
            if values:
                notes.append(f"{name}: " + " / ".join(escape(v.replace(address, "<proxy>")[:40]) for v in values))
        if record["body"]:
            notes.append(f"body {len(record['body'])} B ({record['framing']})")
        if notes:
            shown += " [" + "; ".join(notes) + "]"
        parts.append(shown)
    return "<br>".join(parts)


def escape(text):
    text = text.encode("unicode_escape").decode("ascii") if any(ord(c) < 32 or ord(c) > 126 for c in text) else text
    return text.replace("|", "\\|").replace("`", "'")


def render(template, address, token):
    """The payloads of a case: one, or several sent one after the other's answer."""
    pieces = [template] if isinstance(template, str) else template
    return [
        piece.replace("{auth}", f"Authorization: Bearer {token}\r\n").replace("{host}", address).encode(
            "utf-8", "surrogateescape")
        for piece in pieces
    ]


def run_cases(proxies, upstream, token, verbose=False):
    rows = []
    for group, name, template, watched in CASES:
        cells = []
        for _, address in proxies:
            upstream.clear()
            try:
                received, ended = send(address, render(template, address, token))
            except OSError as error:
                received, ended = b"", f"connect failed ({error.__class__.__name__})"
            time.sleep(0.25)
            records = upstream.taken()
            cells.append((client_view(received, ended), upstream_view(records, watched, address), records, received))
            if verbose:
                print(f"--- {name} via {address}: {ended}\n{received[:600]!r}\n    upstream: {records!r}"[:2000])
        rows.append((group, name, cells))
        summary = " | ".join(f"{c[0]} / up: {len(c[2])}" for c in cells)
        summary += "" if all(outcome(c) == outcome(cells[0]) for c in cells) else "   <- differs"
        print(f"{group:9} {name[:60]:60} {summary}", flush=True)
    return rows


def outcome(cell):
    """What a row compares: the statuses the client got (not who wrote the refusal) and what the upstream got."""
    found, rest = responses(cell[3])
    return [(status, complete) for status, _, complete in found], bool(rest), cell[1]


def markdown(rows, proxies):
    names = [name for name, _ in proxies]
    out = [
        "| group | case | " + " | ".join(f"{n}: client got" for n in names) + " | "
        + " | ".join(f"{n}: upstream got" for n in names) + " | same? |",
        "|---|---|" + "---|" * (2 * len(names)) + "---|",
    ]
    for group, name, cells in rows:
        same = "yes" if all(outcome(c) == outcome(cells[0]) for c in cells) else "**no**"
        out.append(f"| {group} | {escape(name)} | " + " | ".join(c[0] for c in cells) + " | "
                   + " | ".join(c[1] for c in cells) + f" | {same} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Starting the issuer and both proxies (the --portcullis/--pingora mode).
# ---------------------------------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, process, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a process exited early: {process.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def token_from(issuer_url):
    request = urllib.request.Request(
        issuer_url + "oauth/token",
        data=json.dumps({"grant_type": "client_credentials", "client_id": "demo-client",
                         "client_secret": "demo-secret", "audience": AUDIENCE}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access_token"]


def start_all(args, upstream, work):
    processes = []
    issuer_port = free_port()
    issuer_url = f"http://127.0.0.1:{issuer_port}/"
    log = open(os.path.join(work, "issuer.log"), "w")
    issuer = subprocess.Popen([args.portcullis, "issuer", "--listen", f"127.0.0.1:{issuer_port}"], stdout=log,
                              stderr=subprocess.STDOUT)
    processes.append(issuer)
    wait_port(issuer_port, issuer)
    token = token_from(issuer_url)
    config = os.path.join(work, "corpus.toml")
    with open(config, "w") as f:
        f.write(f'upstream = "http://127.0.0.1:{upstream.port}"\n\n[[issuers]]\nissuer = "{issuer_url}"\n'
                f'audiences = ["{AUDIENCE}"]\njwks_uri = "{issuer_url}.well-known/jwks.json"\n\n'
                '[[routes]]\npath = "/public/*"\npublic = true\n\n[[routes]]\npath = "/api/*"\n')
    proxies = []
    for name, command in (
        ("portcullis serve", [args.portcullis, "serve", "--config", config, "--listen"]),
        ("Pingora prototype", [args.pingora, "--config", config, "--listen"]),
    ):
        port = free_port()
        log = open(os.path.join(work, name.split()[0] + ".log"), "w")
        env = dict(os.environ, RUST_LOG="warn")
        process = subprocess.Popen(command + [f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, env=env)
        processes.append(process)
        wait_port(port, process)
        proxies.append((name, f"127.0.0.1:{port}"))
    return proxies, token, processes, config


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portcullis", help="the portcullis binary (starts the issuer and `serve`)")
    parser.add_argument("--pingora", help="the portcullis-pingora binary")
    parser.add_argument("--proxy", action="append", default=[], help="NAME=HOST:PORT of a running proxy")
    parser.add_argument("--upstream-port", type=int, default=0, help="port of the echo upstream (running proxies)")
    parser.add_argument("--token", help="a valid token for the running proxies' /api/* route")
    parser.add_argument("--only", help="run only one group, or the cases whose name contains this text")
    parser.add_argument("--out", help="write the Markdown table here")
    parser.add_argument("--verbose", action="store_true", help="print the bytes each proxy answered")
    parser.add_argument("--keep", action="store_true", help="keep the configuration and the logs of the processes")
    args = parser.parse_args()
    if args.only:
        CASES[:] = [case for case in CASES if args.only == case[0] or args.only in case[1]]
    upstream = Upstream(args.upstream_port)
    processes = []
    if args.proxy:
        proxies = [tuple(p.split("=", 1)) for p in args.proxy]
        token = args.token or ""
        work = None
    elif args.portcullis and args.pingora:
        work = tempfile.mkdtemp(prefix="portcullis-corpus-")
        proxies, token, processes, config = start_all(args, upstream, work)
        print(f"config {config}; logs in {work}" + ("" if args.keep else " (removed at the end; --keep keeps them)"))
    else:
        parser.error("give --portcullis and --pingora, or --proxy (with --upstream-port and --token)")
    try:
        for name, address in proxies:
            print(f"{name}: {address}")
        rows = run_cases(proxies, upstream, token, args.verbose)
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = markdown(rows, proxies)
    differences = sum(1 for _, _, cells in rows if any(outcome(c) != outcome(cells[0]) for c in cells))
    print(f"{len(rows)} cases, {differences} with different outcomes")
    if args.out:
        write_table(args.out, table)


def write_table(path, table):
    """Writes `table` between the markers of `path` (keeping the text around them), or as the whole file."""
    begin, end = "<!-- corpus table: written by corpus.py -->\n", "<!-- end of corpus table -->\n"
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + begin + table + text[text.index(end):]
    else:
        text = begin + table + end
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
