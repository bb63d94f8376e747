"""A real HTTP server on 127.0.0.1 for the source tests, scripted per test: every GET is
answered by the test's own function, and every request it saw is kept."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Site:
    """A server on 127.0.0.1: its base URL, the requests it saw, and an event that ends drips."""

    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


Respond = Callable[[BaseHTTPRequestHandler, Site], None]


@contextmanager
def serve(respond: Respond) -> Iterator[Site]:
    """A threading HTTP/1.1 server whose every GET is answered by ``respond``."""
    site = Site("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            site.requests.append((self.path, dict(self.headers.items())))
            with suppress(BrokenPipeError, ConnectionResetError):  # the client hung up, as asked
                respond(self, site)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


def reply(
    handler: BaseHTTPRequestHandler,
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    headers = {"Date": handler.date_time_string(), **(headers or {})}
    handler.send_response_only(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def chunked_forever(
    handler: BaseHTTPRequestHandler, site: Site, chunk: bytes, pause: float
) -> None:
    """A chunked body that never ends: a chunk, then a pause, until the client hangs up."""
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    while not site.stop.is_set():
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.flush()
        site.stop.wait(pause)
