"""The HTTP client of the listing sources: polite, bounded in time and size, one error type.

Polite: it names itself and a contact in ``User-Agent``, asks with the
validators of the last fetch (If-None-Match, If-Modified-Since) so an
unchanged listing costs a 304 and no body, and reports a server's
``Retry-After``.  Bounded: a connect timeout, and one deadline over the whole
request, redirects and body included, which httpx lacks (its timeouts are per
read, so a server dripping a byte a second holds it forever): it is checked
between chunks and, for a read that stalls, a watchdog shuts the socket when
it passes.  At most ``max_redirects`` hops, each to http(s) only; at most
``max_bytes`` of body after decompression, refused on a too-large
Content-Length before any is read.  Every failure is one ``SourceFailed``
whose reason fits on a status line.
"""

import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from digest import __version__
from digest.errors import SourceFailed

RETRY_AFTER_MAX = 24 * 3600.0
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DELTA_SECONDS = re.compile(r"\d+", re.ASCII)


@dataclass(frozen=True, slots=True)
class Validators:
    """What identifies the server's copy (``ETag``, ``Last-Modified``), sent back next time."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A response body, the validators to send next time, its type, and the URL it came from."""

    body: bytes
    validators: Validators
    content_type: str
    url: str


def user_agent(contact_url: str | None) -> str:
    """``digest/0.1.0 (+https://operator.example/contact)``: who asks, and where to reach them."""
    return f"digest/{__version__} (+{contact_url})" if contact_url else f"digest/{__version__}"


class SourceClient:
    """GETs listings; one per fetch run (``with SourceClient(...) as client``), closed after.

    ``transport``: httpx's, for tests or a proxy; by default a plain one that
    keeps no connection open between requests (sources are polled hours
    apart) and so always knows the socket a watchdog may have to shut, with
    the process's one TLS context (``tls_context``).
    """

    def __init__(
        self,
        user_agent: str,
        *,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = 10,
        total_timeout: float = 60,
        max_redirects: int = 5,
        max_bytes: int = 20_000_000,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.max_redirects = max_redirects
        self.max_bytes = max_bytes
        self.cancelled = False
        self._deadline: _Deadline | None = None
        self._client = httpx.Client(
            headers={"User-Agent": user_agent},
            transport=transport
            or httpx.HTTPTransport(
                verify=tls_context(), limits=httpx.Limits(max_keepalive_connections=0)
            ),
            follow_redirects=False,
        )

    def __enter__(self) -> "SourceClient":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def cancel(self) -> None:
        """End the request in flight now, from another thread (a service stopping), and
        refuse any further one: each ends in ``SourceFailed`` at once."""
        self.cancelled = True
        deadline = self._deadline
        if deadline is not None:
            deadline.expire()

    def get(self, url: str, validators: Validators = Validators()) -> Fetched | None:
        """The body at ``url``, or None when it has not changed since ``validators`` were given."""
        deadline = _Deadline(self.total_timeout)
        self._deadline = deadline  # published before the check: a cancel between expires it
        if self.cancelled:
            raise SourceFailed("stopped: the service is shutting down")
        seen = [url]
        with deadline.watch():
            while True:
                _check_scheme(url)
                fetched = self._hop(url, validators, deadline)
                if isinstance(fetched, str):
                    target = fetched
                    if target in seen:
                        raise SourceFailed(
                            f"redirect loop: {shown(url)} leads back to {shown(target)}"
                        )
                    if len(seen) > self.max_redirects:
                        raise SourceFailed(
                            f"more than {self.max_redirects} redirects, from {shown(seen[0])}"
                        )
                    seen.append(target)
                    url = target
                    continue
                return fetched

    def _hop(self, url: str, validators: Validators, deadline: "_Deadline") -> Fetched | str | None:
        """One request: the fetched body, None for 304, or the URL a redirect points to."""
        headers = {}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        left = deadline.left()
        timeout = httpx.Timeout(left, connect=min(self.connect_timeout, left))
        extensions = {"trace": deadline.trace}
        try:
            request = self._client.build_request(
                "GET", url, headers=headers, timeout=timeout, extensions=extensions
            )
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as err:
            raise self._failure(err, url, deadline) from None
        with deadline.holding(response):
            try:
                return self._answer(response, url, deadline)
            except httpx.HTTPError as err:
                raise self._failure(err, url, deadline) from None
            finally:
                response.close()

    def _answer(
        self, response: httpx.Response, url: str, deadline: "_Deadline"
    ) -> Fetched | str | None:
        status = response.status_code
        if status == 304:
            return None
        if status in REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                raise SourceFailed(f"HTTP {status} from {shown(url)} without a Location")
            try:
                return str(response.url.join(location))
            except httpx.InvalidURL:
                raise SourceFailed(f"HTTP {status} from {shown(url)} to a bad Location") from None
        if not 200 <= status < 300:
            after = None
            if status in (429, 503):
                after = retry_after(response.headers.get("Retry-After"), _server_now(response))
            raise SourceFailed(f"HTTP {status} from {shown(url)}", retry_after=after)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise SourceFailed(f"response over {_size(self.max_bytes)} (Content-Length {declared})")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise SourceFailed(f"response over {_size(self.max_bytes)}")
            if deadline.passed():
                raise SourceFailed(f"timed out after {self.total_timeout:g} s")
        return Fetched(
            bytes(body),
            Validators(response.headers.get("ETag"), response.headers.get("Last-Modified")),
            response.headers.get("Content-Type", ""),
            str(response.url),
        )

    def _failure(self, err: httpx.HTTPError, url: str, deadline: "_Deadline") -> SourceFailed:
        """The one-line reason for a transport error."""
        if deadline.passed() or isinstance(err, httpx.ReadTimeout | httpx.WriteTimeout):
            return SourceFailed(f"timed out after {self.total_timeout:g} s")
        if isinstance(err, httpx.ConnectTimeout):
            return SourceFailed(
                f"connect timed out after {self.connect_timeout:g} s to {shown(url)}"
            )
        if isinstance(err, httpx.TimeoutException):
            return SourceFailed(f"timed out after {self.total_timeout:g} s")
        if isinstance(err, httpx.ConnectError):
            cause = _root(err)
            if isinstance(cause, ConnectionRefusedError):
                return SourceFailed(f"connection refused by {_origin(url)}")
            return SourceFailed(f"cannot connect to {_origin(url)}: {cause}")
        if isinstance(err, httpx.DecodingError):
            return SourceFailed(f"undecodable response from {shown(url)}: {err}")
        return SourceFailed(f"{type(err).__name__} from {shown(url)}: {err}")


@cache
def tls_context() -> ssl.SSLContext:
    """The TLS context httpx would make for each client (certifi's CA bundle, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set), made once per process: loading the
    bundle took 40 to 100 ms of every fetch job, most of one that finds its listing
    unchanged (``python -m bench --only fetch``).  A context is safe to share between
    threads."""
    return httpx.create_ssl_context()


def retry_after(value: str | None, now: datetime) -> float | None:
    """The seconds a ``Retry-After`` asks for (delta-seconds or an HTTP-date), at most a day.

    None for a missing or unreadable one; a date already past asks for none.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), RETRY_AFTER_MAX)


def _server_now(response: httpx.Response) -> datetime:
    """The server's clock (its ``Date``) when it sent one: a Retry-After date is by that clock."""
    try:
        sent = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError, IndexError):
        return datetime.now(UTC)
    return sent if sent.tzinfo else sent.replace(tzinfo=UTC)


class _Deadline:
    """One deadline over a whole ``get``: its time left, and a watchdog that enforces it.

    httpx reads with a timeout per read; a read that starts just before the
    deadline could outlive it by that much.  The watchdog shuts the socket of
    the connection in use when the deadline passes, which ends the read at once.
    """

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._expired = False

    def left(self) -> float:
        return max(self._end - time.monotonic(), 0.001)

    def passed(self) -> bool:
        return self._expired or time.monotonic() >= self._end

    @contextmanager
    def watch(self) -> Iterator[None]:
        timer = threading.Timer(self._end - time.monotonic(), self.expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    @contextmanager
    def holding(self, response: httpx.Response) -> Iterator[None]:
        """Knows the response's socket while it is read (a reused connection has no new one)."""
        stream = response.extensions.get("network_stream")
        if stream is not None:
            self._hold(stream.get_extra_info("socket"))
        try:
            yield
        finally:
            self._hold(None)

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: the socket of each new connection, before a byte is sent."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            if stream is not None:
                self._hold(stream.get_extra_info("socket"))

    def _hold(self, sock: object) -> None:
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
            if self._expired and self._socket is not None:
                _shut(self._socket)

    def expire(self) -> None:
        with self._lock:
            self._expired = True
            if self._socket is not None:
                _shut(self._socket)


def _shut(sock: socket.socket) -> None:
    """Shut the socket's descriptor both ways: a read blocked on it in another thread returns.

    ``socket.socket.shutdown`` itself, not a TLS socket's override, which
    would tear down TLS state another thread is using.
    """
    with suppress(OSError):  # already closed: the request ended as the deadline passed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _check_scheme(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise SourceFailed(f"not a URL: {shown(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceFailed(
            f"not an http(s) URL: {shown(url)}", hint="sources are fetched over HTTP only"
        )


def _root(err: BaseException) -> BaseException:
    """The innermost cause: httpx wraps httpcore's error, which wraps the OSError."""
    for _ in range(10):
        inner = err.__cause__ or err.__context__
        if inner is None:
            break
        err = inner
    return err


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _size(count: int) -> str:
    """``20 MB``, ``1,000 bytes``: the cap as an operator wrote it."""
    if count >= 1_000_000 and count % 100_000 == 0:
        return f"{count / 1_000_000:g} MB"
    return f"{count:,} bytes"


def shown(url: str) -> str:
    """``url`` as errors show it, in logs, ``digest status`` and ``/healthz``: without the
    user, password and query a source's URL may carry as its key."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("?", 1)[0].rsplit("@", 1)[-1]
    query = "?…" if parts.query else ""
    return urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", "")) + query
