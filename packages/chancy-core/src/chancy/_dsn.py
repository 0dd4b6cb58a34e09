"""DSNs: Django ``DATABASES`` entries turned into libpq URIs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["DatabaseConnection", "dsn_from_django"]

#: A Django-style ``DATABASES`` entry.
DatabaseConnection = dict[str, Any]


def dsn_from_django(settings: dict[str, Any]) -> str:
    """A libpq URI for a Django ``DATABASES`` entry (``ENGINE`` is ignored)."""
    user = settings.get("USER") or ""
    password = settings.get("PASSWORD") or ""
    host = settings.get("HOST") or ""
    port = str(settings.get("PORT") or "5432")
    name = quote(str(settings.get("NAME") or ""), safe="")
    auth = ""
    if user:
        # Percent-encoded, not plus-quoted as in the original: libpq does not
        # decode "+", so a password with a space would not authenticate.
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    if host.startswith("/"):
        # A Unix-socket directory: percent-encoded, as libpq URIs require.
        host = quote(host, safe="")
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    netloc = f"{auth}{host}:{port}" if host else auth
    dsn = f"postgresql://{netloc}/{name}"
    options = settings.get("OPTIONS") or {}
    if options:
        dsn += "?" + urlencode(options)
    return dsn
