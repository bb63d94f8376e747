"""Feed routes: ``/feeds/all.atom|rss``, ``/feeds/topics/<slug>.*``, ``/feeds/<token>.*``.

Feed readers poll often, so this path is kept short (``make bench`` compares it
with a bare route returning the same bytes): look the body up in the feed cache
(``feed_cache``), answer ``304`` with no body when the reader has this version
(``If-None-Match`` with weak comparison, as RFC 9110 asks for GET, or else
``If-Modified-Since``), otherwise send the cached bytes -- gzipped when
``Accept-Encoding`` allows it -- with header lists prepared once per body.
An unknown slug, token or suffix is a 404.
"""

from datetime import UTC
from email.utils import parsedate_to_datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from digest.feeds import FORMATS, FeedBody, Format
from digest.web.feed_cache import GZIP_SUFFIX, Raw, Variant
from digest.web.state import web_of


async def site_feed(request: Request) -> Response:
    """``/feeds/all.atom`` and a subscriber's ``/feeds/<token>.atom``."""
    stem, fmt = _parse(request.path_params["name"])
    kind = "all" if stem == "all" else "private"
    return answer(request, await _found(request, kind, stem, fmt))


async def topic_feed(request: Request) -> Response:
    slug, fmt = _parse(request.path_params["name"])
    return answer(request, await _found(request, "topic", slug, fmt))


async def _found(request: Request, kind: str, key: str, fmt: Format) -> Variant:
    found = await web_of(request).feeds.get(kind, key, fmt)
    if found is None:
        raise HTTPException(404)
    return found


def _parse(name: str) -> tuple[str, Format]:
    """``all.atom`` -> ("all", "atom"); a 404 for any other suffix."""
    stem, dot, suffix = name.rpartition(".")
    for fmt in FORMATS:
        if dot and stem and suffix == fmt:
            return stem, fmt
    raise HTTPException(404)


class RawResponse(Response):
    """A response whose header list is prepared already (no per-request header building)."""

    def __init__(self, status_code: int, body: bytes, raw_headers: Raw) -> None:
        self.status_code = status_code
        self.body = body
        self.raw_headers = raw_headers
        self.background = None


def answer(request: Request, found: Variant) -> Response:
    """304 when the reader has this version, else the bytes, gzipped if it accepts that."""
    headers = request.headers
    wants_gzip = accepts_gzip(headers.get("accept-encoding", ""))
    if not_modified(headers.get("if-none-match"), headers.get("if-modified-since"), found.body):
        return RawResponse(304, b"", found.not_modified_gzip if wants_gzip else found.not_modified)
    if wants_gzip:
        return RawResponse(200, found.gzipped, found.gzip_headers)
    return RawResponse(200, found.body.data, found.plain)


def not_modified(if_none_match: str | None, if_modified_since: str | None, body: FeedBody) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if if_none_match is not None:
        return _etag_matches(if_none_match, body.etag)
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:  # "-0000": the zone is not given; HTTP dates are GMT
        since = since.replace(tzinfo=UTC)
    return body.last_modified <= since


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison: ``W/`` and our ``-gz`` suffix are ignored; ``*`` matches anything."""
    for candidate in header.split(","):
        tag = candidate.strip().removeprefix("W/")
        if tag == "*" or tag == etag or tag == etag[:-1] + GZIP_SUFFIX:
            return True
    return False


def accepts_gzip(header: str) -> bool:
    """Whether Accept-Encoding allows gzip (``gzip`` or ``*`` without ``q=0``)."""
    for item in header.lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            quality = params.strip().removeprefix("q=")
            return not (params.strip().startswith("q=") and _is_zero(quality))
    return False


def _is_zero(quality: str) -> bool:
    try:
        return float(quality) == 0
    except ValueError:
        return False
