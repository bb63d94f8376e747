"""Forms: reading a posted form within limits, and the CSRF token each form carries.

Bodies are capped per route (``MAX_FORM_BYTES``, enforced by Starlette before
parsing) and parsed by Starlette (python-multipart), which also reads the
``multipart/form-data`` that RFC 8058 one-click unsubscribes should send.
"""

import re

from starlette.requests import Request
from starlette.responses import Response

from digest.web.security import CSRF_COOKIE, CSRF_FIELD
from digest.web.state import Web

MAX_FORM_BYTES = 16_384
MAX_FIELDS = 16
_COOKIE_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")

Form = dict[str, str]


async def read_form(request: Request) -> Form:
    """The text fields of a posted form (files are refused by ``max_files=0``)."""
    async with request.form(
        max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_FORM_BYTES
    ) as form:
        return {key: value for key, value in form.items() if isinstance(value, str)}


class CsrfToken:
    """The hidden field for one page, and the cookie to set when the browser had none."""

    def __init__(self, web: Web, request: Request) -> None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        self.new_cookie = None if _COOKIE_SHAPE.fullmatch(cookie) else web.csrf.new_cookie()
        self.field = web.csrf.field_for(self.new_cookie or cookie)
        self._secure = web.secure_cookies

    def apply(self, response: Response) -> Response:
        if self.new_cookie is not None:
            response.set_cookie(
                CSRF_COOKIE,
                self.new_cookie,
                secure=self._secure,
                httponly=True,
                samesite="lax",
            )
        return response


def csrf_ok(web: Web, request: Request, form: Form) -> bool:
    return web.csrf.valid(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD))


def client_address(request: Request) -> str:
    """The peer's address (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else "unknown"
