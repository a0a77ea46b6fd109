"""Backend URLs as they may be shown: in logs, errors, ``qtasks info`` and reprs."""

from __future__ import annotations

import re

_SECRET_OPTIONS = re.compile(r"([?&][^=&]*password[^=&]*=)[^&]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with every password replaced by ``***``: the one before ``@`` (``user:pw@``,
    and a bare ``pw@``, which Redis clients read as a password) and options such as
    ``?password=`` or ``?sentinel_password=``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority = rest.split("/", 1)[0]
    # the credentials end at the last '@' of the host part; a password with a '/', '?' or '#'
    # left unencoded (which no URL parser reads right) still ends at an '@' after a ':' (what
    # that masks too much of a URL with an '@' in its query is masked safely)
    at = authority.rfind("@") if "@" in authority else rest.rfind("@")
    if at >= 0 and ("@" in authority or ":" in rest[:at]):
        creds, host = rest[:at], rest[at + 1:]
        user, colon, _ = creds.partition(":")
        rest = f"{user}:***@{host}" if colon else f"***@{host}"
    return scheme + "://" + _SECRET_OPTIONS.sub(r"\1***", rest)
