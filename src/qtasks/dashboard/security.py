"""Who may see the dashboard, and proof that a POST came from its own pages.

- ``Auth``: HTTP Basic with one ``user:password``, and/or a token (``Authorization: Bearer``,
  or ``?token=`` once, which leaves an HttpOnly cookie). Secrets are compared in constant time.
- CSRF: a random token in a SameSite=Strict cookie, repeated in every form; a POST whose form
  does not carry the cookie's value is refused (the double-submit pattern).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSRF_COOKIE = "qtasks_csrf"
TOKEN_COOKIE = "qtasks_token"


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (of any lengths)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass(frozen=True)
class Auth:
    """``basic``: "user:password"; ``token``: a bearer token. Neither: everyone is let in."""

    basic: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if self.basic is not None and ":" not in self.basic:
            raise ValueError("--auth takes user:password")
        if self.token is not None and not self.token:
            raise ValueError("the token is empty")

    @property
    def required(self) -> bool:
        return self.basic is not None or self.token is not None

    def allows(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        if not self.required:
            return True
        kind, _, value = headers.get("authorization", "").partition(" ")
        ok = False
        if self.basic is not None and kind.lower() == "basic":
            try:
                ok = same(base64.b64decode(value, validate=True).decode("utf-8"), self.basic)
            except (binascii.Error, UnicodeDecodeError):
                ok = False
        if self.token is not None:
            if kind.lower() == "bearer":
                ok = ok or same(value, self.token)
            if TOKEN_COOKIE in cookies:
                ok = ok or same(cookies[TOKEN_COOKIE], self.token)
        return ok


def cookies_of(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:  # a malformed Cookie header: it carries no credentials
                return {}
    return {key: morsel.value for key, morsel in jar.items()}


class AuthMiddleware:
    """Refuses every request without valid credentials (401, asking for Basic when a
    password is configured). ``?token=`` with the right token sets the token cookie and
    redirects to the same page without it, so the token does not stay in the address bar."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.auth.required:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = cookies_of(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        offered = query.get("token", [None])[0]
        if self.auth.token is not None and offered is not None and same(offered, self.auth.token):
            rest = urlencode([(k, v) for k, vs in query.items() if k != "token" for v in vs])
            path = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            await _respond(send, 303, b"", [
                (b"location", path.encode("latin-1")),
                (b"set-cookie", f"{TOKEN_COOKIE}={self.auth.token}; HttpOnly; SameSite=Strict; "
                                f"Path=/".encode("latin-1"))])
            return
        if self.auth.allows(headers, cookies):
            await self.app(scope, receive, send)
            return
        extra = [(b"www-authenticate", b'Basic realm="qtasks", charset="UTF-8"')] \
            if self.auth.basic is not None else []
        await _respond(send, 401, b"401: authentication required\n", extra)


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, submitted: str | None) -> bool:
    return bool(cookie) and bool(submitted) and same(str(submitted), str(cookie))
