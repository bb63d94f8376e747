"""The links of a paper: URLs found in its abstract, its code repositories, its page."""

import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import quote, urlsplit

_URL = re.compile(r"https?://[^\s{}<>\"'\\|^`\[\]]+")
_URL_TAIL = ".,;:!?)'\""


def find_links(text: str) -> list[str]:
    """URLs in an abstract, in order, without LaTeX residue or trailing punctuation."""
    found: dict[str, None] = {}
    if "http" not in text:
        return []
    for match in _URL.finditer(text):
        url = match.group().rstrip(_URL_TAIL)
        if url.count("(") < url.count(")"):
            url = url[: url.rindex(")")]
        if len(url) > len("https://x.y"):
            found.setdefault(url, None)
    return list(found)


REPO_HOSTS = frozenset(
    {"github.com", "gitlab.com", "huggingface.co", "bitbucket.org", "codeberg.org"}
)


@lru_cache(maxsize=8192)
def paper_url(template: str, title: str) -> str:
    """``[digest] paper_url`` with ``{title}`` URL-encoded (cached: papers recur across digests)."""
    return template.replace("{title}", quote(title, safe=""))


def code_links(links: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """http(s) links to a repository host, labelled ``Code (host/path)``."""
    found = []
    for url in links:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").removeprefix("www.")
        except ValueError:
            continue
        path = parts.path.rstrip("/")
        if parts.scheme in ("http", "https") and host in REPO_HOSTS and path:
            found.append((url, f"Code ({host}{path})"))
    return tuple(found)
