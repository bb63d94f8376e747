"""A paper's identity: its title, normalized; the id stored and linked is a hash of it."""

import hashlib
import unicodedata


def normalize_title(title: str) -> str:
    """The identity of a paper: NFKC, case-folded, whitespace collapsed."""
    if not title.isascii():
        title = unicodedata.normalize("NFKC", title)
    return " ".join(title.casefold().split())


def paper_id(title: str) -> str:
    """A stable 16-hex-digit id derived from the normalized title."""
    return hashlib.sha256(normalize_title(title).encode()).hexdigest()[:16]


def title_and_arxiv_id(title: str, arxiv_id: str) -> str:
    """The id of a paper whose title another paper (another arXiv id) already has."""
    key = f"{normalize_title(title)}\x00arXiv:{arxiv_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
