"""The Hugging Face Daily Papers JSON API (``/api/daily_papers``) parsed into entries.

Pure: bytes in, a ``Parsed`` listing or ``SourceFailed`` out.  The shape was
checked against ``PaperInfo`` and ``PaperAuthor`` in huggingface_hub's
``hf_api.py`` (``HfApi.list_daily_papers`` GETs ``/api/daily_papers`` and reads
each element of the JSON array) and against responses that public clients
keep in their tests and notes.  The response is an array of items::

    {"paper": {"id": "2509.04664",
               "authors": [{"_id": "…", "name": "Adam Tauman Kalai", "hidden": false,
                            "user": {…}}, …],
               "publishedAt": "2025-09-04T21:26:31.000Z",     # on arXiv
               "submittedOnDailyAt": "…", "submittedOnDailyBy": {…},
               "title": "…", "summary": "…with\\nline breaks…",
               "upvotes": 26, "discussionId": "…", "githubRepo": "https://github.com/…",
               "githubStars": 1, "projectPage": "…", "ai_summary": "…", "ai_keywords": […],
               "organization": {…}},
     "publishedAt": "…",    # when it was listed
     "title": "…", "summary": "…", "thumbnail": "…", "numComments": 2,
     "submittedBy": {…}, "organization": {…}, "isAuthorParticipating": false}

Fields come and go (``githubRepo`` only when a repository is linked,
``organization`` rarely), so only a title and a summary are required, from
the paper or else from the item.  Every other field is taken only when it has
the right type and a sane value, and otherwise dropped: a bad upvote count
costs the count, not the paper.  A ``paper.id`` that is not an arXiv id is
dropped the same way (the paper is known by its title everywhere in digest).
Authors are kept whether or not ``hidden``: the list is the paper's own, as
on arXiv.  Unknown fields are ignored.
"""

import json

from digest.errors import SourceFailed
from digest.models import PaperMeta
from digest.sources.listing import (
    AUTHORS_MAX,
    ListingBuilder,
    Parsed,
    arxiv_id,
    clean_text,
    count,
    iso_date,
    person,
    web_url,
)


def parse_daily_papers(body: bytes, source: str) -> Parsed:
    """Each item of the response, in its order, as an entry, or skipped with a reason.

    ``source`` names the listing; the reasons do not repeat it, as the caller
    files them under the source already.
    """
    items = _json_array(body)
    listing = ListingBuilder()
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            listing.skip(number, f"not an object but {_kind(item)}")
            continue
        paper = item.get("paper")
        if not isinstance(paper, dict):
            paper = {}
        title = clean_text(_either(paper, item, "title"))
        summary = clean_text(_either(paper, item, "summary"))
        if title is None:
            listing.skip(number, "title missing")
        elif summary is None:
            listing.skip(number, "summary missing")
        else:
            listing.add(number, title, summary, _meta(paper, item))
    return listing.finish()


def _json_array(body: bytes) -> list[object]:
    """The top-level array, or SourceFailed saying what came instead."""
    try:
        value = json.loads(body)
    except json.JSONDecodeError as err:
        raise SourceFailed(f"not JSON: {err.msg} at byte {err.pos}") from None
    except UnicodeDecodeError as err:
        raise SourceFailed(f"not JSON: not UTF-8 text (byte {err.start})") from None
    except ValueError as err:  # an integer of more than 4,300 digits
        raise SourceFailed(f"not JSON: {err}") from None
    except RecursionError:
        raise SourceFailed("not JSON: nested too deeply") from None
    if not isinstance(value, list):
        raise SourceFailed(
            f"not a list of papers but {_kind(value)}", hint="is the URL the /api/daily_papers one?"
        )
    return value


def _either(paper: dict[str, object], item: dict[str, object], key: str) -> object:
    """The paper's field, else the item's: both carry a title and a summary."""
    value = paper.get(key)
    return value if isinstance(value, str) and value.strip() else item.get(key)


def _meta(paper: dict[str, object], item: dict[str, object]) -> PaperMeta:
    return PaperMeta(
        arxiv_id=arxiv_id(paper.get("id")),
        authors=_authors(paper.get("authors")),
        published=iso_date(paper.get("publishedAt")),
        listed=iso_date(paper.get("submittedOnDailyAt") or item.get("publishedAt")),
        upvotes=count(paper.get("upvotes")),
        comments=count(item.get("numComments")),
        github=web_url(paper.get("githubRepo")),
    )


def _authors(value: object) -> tuple[str, ...]:
    """The names in order; an entry that is not ``{"name": text}`` is left out, not the list."""
    if not isinstance(value, list):
        return ()
    names = []
    for author in value[:AUTHORS_MAX]:
        name = person(author.get("name")) if isinstance(author, dict) else None
        if name:
            names.append(name)
    return tuple(names)


def _kind(value: object) -> str:
    """A JSON value's kind, as a reason names it: ``an object``, ``a string``, ``null``."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")
