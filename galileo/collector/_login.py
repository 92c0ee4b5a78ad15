"""The viewer's login, for a collector with an API key: ``GET /login`` shows a form, ``POST /login`` checks.

The form posts ``api_key`` and ``next`` (the page that sent the browser here) as
``application/x-www-form-urlencoded``. The right key (compared in constant time) sets the session cookie
(:data:`galileo.collector._guard.SESSION_COOKIE`: a token of this collector, ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over HTTPS, living as long as an API token) and answers 303 to ``next``
(a path on this collector only: anything else goes to ``/``); a wrong one answers 401 with the form again.
The guard has already checked the Host and the Origin. Without an API key there is nothing to log in to:
both answer 303 to ``/``.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from galileo._version import __version__
from galileo.collector import _auth
from galileo.collector._guard import SESSION_COOKIE, Access
from galileo.collector.viewer.pages import PAGE_HEADERS, STATIC_PATH, render

__all__ = ["login_routes"]

# The viewer's headers, but with the referrer kept on this origin: a browser submitting a form from a page
# with ``no-referrer`` sends ``Origin: null``, which the guard refuses as it would a sandboxed frame's.
_HEADERS = {**PAGE_HEADERS, "Referrer-Policy": "same-origin"}


def _safe_next(value: str | None) -> str:
    """``value`` when it is a path on this collector, else ``/`` (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or not value.isprintable():
        return "/"
    return value


class _Login:
    def __init__(self, access: Access, subject: str, token_ttl: float) -> None:
        self.access = access
        self.subject = subject
        self.token_ttl = token_ttl

    def _form(self, next_path: str, error: str = "", status: int = 200) -> Response:
        page = render("login.html", static=STATIC_PATH, version=__version__, next=next_path, error=error)
        return HTMLResponse(page, status_code=status, headers=_HEADERS)

    async def show(self, request: Request) -> Response:
        if self.access.api_key is None:
            return RedirectResponse("/", status_code=303)
        return self._form(_safe_next(request.query_params.get("next")))

    async def submit(self, request: Request) -> Response:
        if self.access.api_key is None:
            return RedirectResponse("/", status_code=303)
        try:
            fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        except ValueError:  # more fields than a login form has
            return self._form("/", "That form was not this collector's login.", status=400)
        next_path = _safe_next((fields.get("next") or ["/"])[0])
        if not self.access.key_matches((fields.get("api_key") or [""])[0]):
            return self._form(next_path, "That is not this collector's API key.", status=401)
        token = _auth.issue_token(self.access.secret, self.subject, self.token_ttl)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(self.token_ttl),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response


def login_routes(access: Access, subject: str, token_ttl: float) -> list[Route]:
    """``GET|POST /login``; ``subject`` is the user the session's tokens name."""
    login = _Login(access, subject, token_ttl)
    return [
        Route("/login", login.show, methods=["GET"]),
        Route("/login", login.submit, methods=["POST"]),
    ]
