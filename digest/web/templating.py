"""Templating: the web front's Jinja2 templates, turned into HTML responses with safe headers.

The pages live in ``templates/web/`` beside the email templates and include the
same CSS partials, so the site and the digest look alike (light and dark).
Everything is autoescaped; no page needs JavaScript, and the Content-Security-
Policy forbids it.  Pages that carry a token (manage, unsubscribe, confirm) must
not leak it: ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
This is the only module of ``digest.web`` that imports jinja2.
"""

from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from starlette.responses import HTMLResponse

from digest.config import Config
from digest.render import template_environment

NO_STORE = "no-store"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class PageTemplates:
    """Templates compiled once per app; rendering is thread-safe (Jinja2 templates are)."""

    def __init__(self, config: Config) -> None:
        self.env = template_environment()
        name = parseaddr(config.delivery.from_)[0]
        self.globals: dict[str, Any] = {
            "site": name or "Paper Digest",
            "topics": [(t.name, t.feed_slug) for t in config.topics],
        }

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render({**self.globals, **context})

    def page(
        self,
        name: str,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        cache: str = NO_STORE,
        **context: Any,
    ) -> HTMLResponse:
        """A whole page: ``templates/web/<name>.html.j2`` with the security headers."""
        html = self.render(f"web/{name}.html.j2", **context)
        return HTMLResponse(
            html, status, headers={**SECURITY_HEADERS, "Cache-Control": cache, **(headers or {})}
        )

    def message(
        self,
        title: str,
        *paragraphs: str,
        status: int = 200,
        links: list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """A short page: a heading, a few paragraphs, a few links (href, label)."""
        return self.page(
            "message",
            status,
            headers=headers,
            title=title,
            paragraphs=paragraphs,
            links=links or [],
        )
