"""The latent explorer's HTTP server: a local web page and the JSON API of
vaekit.explorer.api.

Standard library HTTP server (a bounded pool of worker threads, model calls under one lock),
static assets from vaekit/explorer/static (no CDN: the page makes no request off this server).
Every API handler validates its input and answers bad input with a 4xx and a JSON error; the
server never dies on a request. It answers only requests addressed to it (the Host header) and
not sent by another site's page (the Origin header), and reads each request under deadlines, so
slow or silent clients cannot hold its threads.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import queue
import re
import selectors
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from .. import outputs
from .api import ApiError, Explorer, show_value

MAX_BODY = 4 << 20  # bytes of a request body (a base64 upload of MAX_UPLOAD fits)
STATIC = Path(__file__).parent / "static"
ASSETS = {  # route -> (file, content type): the only files the server reads
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Nothing but this server: no CDN, no fonts, no analytics; images come as data: URLs.
CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The HTTP layer's limits. A connection waits in the listen backlog; once accepted, one thread
# reads all connections' headers, under a deadline counted from the accept; then a worker
# thread reads the body, under its own deadline, and answers.
BACKLOG = 256  # listen() backlog: a burst of concurrent clients waits instead of being reset
WORKERS = 32  # threads answering requests, at most
MAX_QUEUED = 512  # connections accepted and not yet taken by a worker; beyond it a 503 at once
HEADER_TIMEOUT = 5.0  # seconds from accept to a complete request line and headers
BODY_TIMEOUT = 10.0  # seconds from the headers to the whole body: then 408
SEND_TIMEOUT = 10.0  # seconds a client may take to take in a response
_BUSY_BODY = b'{"error": "the explorer has too many connections waiting; try again"}'
BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


class _DeadlineReader(io.RawIOBase):
    """A connection's input with a deadline for a whole part of the request (the request line
    and headers, then the body): unlike a socket timeout, which each byte restarts, it drops a
    client that sends one byte at a time. Bytes already received are read even past the
    deadline (a request that waited in the queue is not lost); waiting for more is not."""

    def __init__(self, sock, deadline: float, send_timeout: float, late: str, head: bytes = b""):
        self.sock, self.deadline, self.send_timeout = sock, deadline, send_timeout
        self.late = late  # the TimeoutError's message
        self.head = head  # bytes already read from the socket (by the server's header reader)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n], self.head = self.head[:n], self.head[n:]
            return n
        self.sock.settimeout(max(self.deadline - time.monotonic(), 0.0))  # 0: data already here
        try:
            return self.sock.recv_into(buf)
        except (BlockingIOError, TimeoutError):
            raise TimeoutError(self.late) from None
        finally:
            self.sock.settimeout(self.send_timeout)  # for the response


class Handler(BaseHTTPRequestHandler):
    """Routes requests to an Explorer (set on a subclass by make_server); JSON errors only.
    Answers only requests addressed to this server (Host) from its own page or no page (Origin).
    """

    explorer: Explorer
    server_version = "vaekit-explore"
    header_timeout = HEADER_TIMEOUT  # seconds from accept to the end of the headers
    body_timeout = BODY_TIMEOUT  # seconds from the headers to the end of the body
    timeout = SEND_TIMEOUT  # seconds a client may take to take in a response
    quiet = False

    def setup(self) -> None:
        super().setup()
        local = getattr(self.server, "local", None)  # an ExplorerServer's: what it read
        start = getattr(local, "accepted", None) or time.monotonic()
        self.rfile.close()  # the plain socket file: read through the deadline instead
        late = f"no complete request line and headers within {self.header_timeout:g} s"
        deadline = start + self.header_timeout
        head = getattr(local, "head", b"")
        self.input = _DeadlineReader(self.connection, deadline, self.timeout, late, head)
        self.rfile = io.BufferedReader(self.input)

    def log_message(self, fmt: str, *args) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response_only(status)  # logged once sent: a vanished client logs one line
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log_request(status, len(body))

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, outputs.dumps(obj).encode(), "application/json")  # strict JSON

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """http.server's own refusals (a request line that is not HTTP, headers too long, an
        unknown method) as JSON, like every other answer, always with a status line; an
        unknown method is a 405 like a known one on the wrong route, not a 501."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = (
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"method {self.command[:40]!r} is not allowed",
            )
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a line that is not HTTP: answer in HTTP/1.0
            self.request_version = "HTTP/1.0"
        self._json(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def _body(self, image_ok: bool) -> dict:
        """The request's JSON object, whatever its Content-Type says (curl -d sends a form's,
        a browser's fetch of a string text/plain), except: a raw image body (image/*) becomes
        {"image": its base64} where image_ok (/api/encode), so `curl --data-binary @x.png -H
        'Content-Type: image/png'` works; multipart forms are refused (415)."""
        raw = self._read()
        ctype = self.headers.get_content_type()  # lower case; text/plain when not given
        if ctype.startswith("image/"):
            if not image_ok:
                raise ApiError(415, f"a raw image body ({ctype}) is only for /api/encode")
            return {"image": base64.b64encode(raw).decode()}
        if ctype.startswith("multipart/"):
            raise ApiError(
                415, f"{ctype} is not accepted: send a JSON object, or a raw image (image/*)"
            )
        if not raw.strip():
            raise ApiError(400, "the request body is empty: send a JSON object")
        try:
            body = json.loads(raw)
        except RecursionError:
            raise ApiError(400, "request body is not valid JSON: nested too deeply") from None
        except json.JSONDecodeError as e:
            raise ApiError(
                400, f"request body is not valid JSON ({e.msg}, at byte {e.pos})"
            ) from None
        except UnicodeDecodeError:
            raise ApiError(400, "request body is not valid JSON (not UTF-8 text)") from None
        except ValueError as e:  # an integer of more digits than Python converts
            why = str(e).split(":")[0]
            raise ApiError(400, f"request body is not valid JSON ({why})") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"request body must be a JSON object, got {show_value(body)}")
        return body

    def _read(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "a JSON body with Content-Length is required")
        if not (length.strip().isascii() and length.strip().isdigit()):
            raise ApiError(400, f"bad Content-Length {length[:40]!r}: not a number of bytes")
        n = int(length)
        if n > MAX_BODY:
            self.close_connection = True  # the body is not read: drop the connection after
            raise ApiError(413, f"request body is {n} bytes; at most {MAX_BODY} allowed")
        self.input.deadline = time.monotonic() + self.body_timeout
        try:
            raw = self.rfile.read(n)
        except TimeoutError:
            self.close_connection = True
            why = f"request body ({n} bytes) not received within {self.body_timeout:g} s"
            raise ApiError(408, why) from None
        if len(raw) < n:
            self.close_connection = True
            raise ApiError(400, f"request body ended after {len(raw)} of its {n} bytes")
        return raw

    def _check_addressed_to_us(self) -> None:
        """403 unless Host names this server (a page elsewhere cannot reach it by re-pointing
        its own domain at 127.0.0.1: DNS rebinding) and any Origin is this server's own (a
        page elsewhere cannot post to it: CSRF)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1:
            raise ApiError(403, f"a request needs exactly one Host header, got {len(hosts)}")
        host = split_host(hosts[0])
        if host is None or not self.server.accepts(*host):
            raise ApiError(403, f"Host {hosts[0][:80]!r} is not this server's address")
        origin = self.headers.get("Origin")
        if origin is not None:
            own = origin.lower().startswith("http://") and split_host(origin[7:]) == host
            if not own:
                raise ApiError(403, f"cross-origin request refused (Origin {origin[:80]!r})")

    def _gone(self, e: OSError) -> None:
        """The client went away or stopped reading: one log line, no traceback."""
        self.close_connection = True
        if isinstance(e, TimeoutError):
            why = f"did not take the response within {self.timeout:g} s"
        else:
            why = f"disconnected ({type(e).__name__})"
        self.log_message('"%s %s": client %s', self.command, self.path[:200], why)

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        ex = self.explorer
        get = {"/api/info": ex.info, "/api/map": lambda: ex.map}
        post = {"/api/decode": ex.decode, "/api/sample": ex.sample, "/api/encode": ex.encode}
        try:
            try:
                self._check_addressed_to_us()
                if self.command in ("GET", "HEAD") and path in ASSETS:
                    file, ctype = ASSETS[path]
                    return self._send(200, (STATIC / file).read_bytes(), ctype)
                if path == "/favicon.ico":  # browsers ask; there is none
                    return self._send(204, b"", "image/x-icon")
                if self.command in ("GET", "HEAD") and path in get:
                    return self._json(200, get[path]())
                if self.command == "POST" and path in post:
                    return self._json(200, post[path](self._body(path == "/api/encode")))
                if path in ASSETS or path in get or path in post:
                    raise ApiError(405, f"{self.command} is not allowed on {path}")
                raise ApiError(404, f"no such route: {path}")
            except ApiError as e:
                self._json(e.status, {"error": str(e)})
            except (ConnectionError, TimeoutError):
                raise
            except Exception as e:  # a bug, not bad input: answer, log, keep serving
                self.log_error("internal error on %s: %r", path, e)
                self._json(500, {"error": f"internal error: {type(e).__name__}"})
        except (ConnectionError, TimeoutError) as e:
            self._gone(e)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _route


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/?#@\[\]\\]+)(?::([0-9]{1,5}))?")


def split_host(value: str) -> tuple[str, int] | None:
    """A Host header (or an origin without its scheme) -> (lower-case name, port), the port 80
    when absent and IPv6 brackets dropped; None when it is not a plain host[:port]."""
    m = _HOST.fullmatch(value.strip())
    if m is None:
        return None
    return m.group(1).strip("[]").lower(), int(m.group(2) or 80)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ExplorerServer(HTTPServer):
    """The explorer's HTTP server. One thread accepts (a listen backlog for bursts); one thread
    reads every connection's request line and headers at once (a selector), dropping those not
    complete within the header deadline, so slow or silent clients hold a socket, not a thread;
    complete requests go to at most `workers` threads. At most `max_queued` connections wait
    for a worker (in either stage); beyond that a 503 at once.

    Hosts: bound to a loopback address, only localhost, 127.0.0.1, [::1] (and the bound
    address) with the bound port; bound to another address or 0.0.0.0, also any IP address
    (a literal address cannot be re-pointed by DNS) and this machine's host name, and any
    names given in `hosts`."""

    request_queue_size = BACKLOG

    def __init__(
        self, address, handler, workers: int = WORKERS, max_queued: int = MAX_QUEUED, hosts=()
    ):
        self.workers, self.max_queued = workers, max_queued
        self.local = threading.local()  # a worker's connection: accept time, bytes read so far
        self._new: queue.SimpleQueue = queue.SimpleQueue()  # accepted, for the header reader
        self._ready: queue.SimpleQueue = queue.SimpleQueue()  # headers complete, for a worker
        self._waiting = 0  # connections accepted and not yet taken by a worker
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._heads: threading.Thread | None = None
        self._closed = False
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)  # binds and listens; OSError if it cannot
        bound, self.port = self.server_address[:2]
        self.loopback = ipaddress.ip_address(bound).is_loopback
        names = {"localhost", "127.0.0.1", "::1", bound.lower()}
        if not self.loopback:
            names.add(socket.gethostname().lower())
        self.host_names = frozenset(names | {h.lower() for h in hosts})

    def accepts(self, name: str, port: int) -> bool:
        """Whether a request whose Host is name:port is addressed to this server."""
        if port != self.port:
            return False
        return name in self.host_names or (not self.loopback and _is_ip(name))

    def log(self, line: str) -> None:
        if not self.RequestHandlerClass.quiet:
            sys.stderr.write(line + "\n")

    def process_request(self, request, client_address) -> None:
        """Hand an accepted connection to the header reader, or answer 503 when full."""
        with self._lock:
            full = self._waiting >= self.max_queued
            self._waiting += not full
        if full:
            self.log(f"{client_address[0]} 503: {self.max_queued} connections already waiting")
            request.setblocking(False)
            try:
                request.send(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        if self._heads is None:
            self._heads = threading.Thread(
                target=self._read_heads, name=f"explorer-{self.port}-headers", daemon=True
            )
            self._heads.start()
        self._new.put((request, client_address, time.monotonic()))
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the wake-up pipe is full: the reader has wake-ups pending anyway
            pass

    def _read_heads(self) -> None:
        """Read all new connections' request lines and headers; hand complete ones to workers,
        drop those past the header deadline or gone. Connections are kept in accept order, so
        the first is the next to expire."""
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        conns: dict[socket.socket, tuple] = {}  # sock -> (client address, accept time, bytes)
        limit = self.RequestHandlerClass.header_timeout
        while not self._closed:
            first = next(iter(conns.values()), None)
            wait = 1.0 if first is None else max(first[1] + limit - time.monotonic(), 0.0)
            for key, _ in sel.select(wait):
                sock = key.fileobj
                if sock is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    while True:
                        try:
                            sock, address, accepted = self._new.get_nowait()
                        except queue.Empty:
                            break
                        sock.setblocking(False)
                        conns[sock] = (address, accepted, b"")
                        sel.register(sock, selectors.EVENT_READ)
                    continue
                address, accepted, head = conns[sock]
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:  # reset before its request was complete
                    self.log(f"{address[0]} client disconnected ({type(e).__name__})")
                    chunk = b""
                if chunk:
                    tail = head[-3:] + chunk
                    head += chunk
                    conns[sock] = (address, accepted, head)
                if not chunk or b"\n\n" in tail or b"\n\r\n" in tail or len(head) > 65540:
                    sel.unregister(sock)
                    del conns[sock]
                    if chunk:  # complete (or too long: the handler answers 414 or 431)
                        self._hand_over(sock, address, accepted, head)
                    else:  # closed without a request, as a browser's spare connection does
                        self._drop(sock)
            now = time.monotonic()
            while conns:
                sock, (address, accepted, head) = next(iter(conns.items()))
                if now < accepted + limit:
                    break
                sel.unregister(sock)
                del conns[sock]
                if head:  # a slow client (one that sent nothing is a browser's spare connection)
                    why = f"no complete request line and headers within {limit:g} s"
                    self.log(f"{address[0]} dropped: {why}")
                self._drop(sock)
        for sock in conns:
            self._drop(sock)
        sel.close()

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._waiting -= 1
        self.shutdown_request(sock)

    def _hand_over(self, sock: socket.socket, address, accepted: float, head: bytes) -> None:
        """Queue a connection whose headers are in for a worker (started as needed, at most
        `workers` of them)."""
        sock.setblocking(True)
        self._ready.put((sock, address, accepted, head))
        with self._lock:
            if len(self._threads) < self.workers and self._ready.qsize() > self._idle:
                t = threading.Thread(target=self._work, daemon=True)
                t.name = f"explorer-{self.port}-worker-{len(self._threads)}"
                self._threads.append(t)
                t.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._ready.get()
            with self._lock:
                self._idle -= 1
                self._waiting -= item is not None
            if item is None:
                return
            request, client_address, self.local.accepted, self.local.head = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that vanished mid-request is one log line; anything else a traceback."""
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):
            self.log(f"{client_address[0]} client disconnected ({type(e).__name__})")
        else:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self._closed = True
        try:
            self._wake_w.send(b"\0")  # the header reader ends, closing its connections
        except OSError:
            pass
        if self._heads is not None:
            self._heads.join(timeout=5)
        for q in (self._new, self._ready):  # connections not yet read or served: close them
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self.shutdown_request(item[0])
        for _ in self._threads:  # and let the workers end
            self._ready.put(None)
        self._wake_r.close()
        self._wake_w.close()


def host_warning(host: str) -> str | None:
    """A warning to print when the server listens beyond this machine, else None."""
    if host in LOOPBACK:
        return None
    return (
        f"warning: listening on {host}: anyone who can reach this machine on that address can "
        "use the explorer and see the model and its test images (it answers requests whose Host "
        "is an IP address, localhost or this machine's name, with this port)"
    )


def make_server(
    explorer: Explorer | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
    *,
    workers: int = WORKERS,
    max_queued: int = MAX_QUEUED,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    send_timeout: float = SEND_TIMEOUT,
    hosts: tuple[str, ...] = (),
) -> ExplorerServer:
    """A bound (not yet serving) HTTP server for the explorer; port 0 picks a free port.

    The explorer may be set later on server.RequestHandlerClass, to bind before loading.
    `hosts`: more names for the Host header to accept (a name you reach this machine by)."""
    attrs = {
        "explorer": explorer,
        "quiet": quiet,
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "timeout": send_timeout,
    }
    handler = type("ExplorerHandler", (Handler,), attrs)
    return ExplorerServer((host, port), handler, workers, max_queued, hosts)


def url_of(server: HTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
