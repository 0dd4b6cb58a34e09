"""Authentication of the web API: backends, password hashes and bearer tokens.

Every protected endpoint accepts either a **session cookie** (set by ``POST
/api/v1/login``) or a **bearer token** (``Authorization: Bearer <token>``,
returned by the same login; ``?token=`` for the websocket), whatever the
backend.

* :class:`AuthBackend`: the abstract base. A Starlette
  :class:`~starlette.authentication.AuthenticationBackend` plus
  :meth:`~AuthBackend.login` and :meth:`~AuthBackend.logout`.
* :class:`SimpleAuthBackend`: a fixed ``{username: password}`` dict. Passwords
  may be plaintext (as in the original Chancy) or, better, hashes made by
  :func:`hash_password`.
* :class:`TokenAuthBackend`: signed, expiring bearer tokens with a secret of
  your own (so that another service can mint them too), plus the session.

Write your own by subclassing :class:`AuthBackend`::

    class LdapAuthBackend(AuthBackend):
        async def login(self, request, username, password):
            if not await ldap_check(username, password):
                return False
            request.session["username"] = username
            return True

        async def logout(self, request):
            request.session.pop("username", None)

        async def authenticate(self, conn):
            username = conn.session.get("username")
            if username:
                return AuthCredentials(["authenticated"]), SimpleUser(username)
            return None
"""

from __future__ import annotations

import abc
import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final

import itsdangerous
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.requests import HTTPConnection, Request

__all__ = [
    "AuthBackend",
    "SimpleAuthBackend",
    "TokenAuthBackend",
    "TokenSigner",
    "bearer_token",
    "hash_password",
    "is_password_hash",
    "verify_password",
]

#: The scope every authenticated request gets.
AUTHENTICATED: Final = "authenticated"
#: Default lifetime of bearer tokens: 7 days.
DEFAULT_TOKEN_MAX_AGE: Final = 7 * 24 * 3600
#: PBKDF2-SHA256 iterations of :func:`hash_password` (OWASP 2023 advice).
DEFAULT_ITERATIONS: Final = 600_000

_HASH_SCHEME: Final = "pbkdf2_sha256"
_SESSION_KEY: Final = "username"
_TOKEN_SALT: Final = "chancy.api.token"


# ---------------------------------------------------------------------------
# Password hashes
# ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """A salted PBKDF2-SHA256 hash of ``password`` for :class:`SimpleAuthBackend`.

    The result looks like ``pbkdf2_sha256$600000$<salt>$<hash>``; store it
    instead of the password::

        $ python -c "from chancy.plugins.api.auth import hash_password as h; print(h('s3cret'))"

    :param iterations: PBKDF2 rounds (more is slower to check and to crack).
    :param salt: 16 random bytes by default.
    """
    if not isinstance(password, str):
        raise TypeError(f"password must be a str, got {type(password).__name__}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    if salt is None:
        salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{_HASH_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def is_password_hash(value: str) -> bool:
    """Whether ``value`` is a hash made by :func:`hash_password` (not a plaintext password)."""
    parts = value.split("$") if isinstance(value, str) else []
    return len(parts) == 4 and parts[0] == _HASH_SCHEME and parts[1].isdigit()


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` hash, or
    a plaintext password), compared in constant time."""
    if not isinstance(password, str) or not isinstance(stored, str):
        return False
    if is_password_hash(stored):
        _, rounds, salt, expected = stored.split("$")
        try:
            digest = hashlib.pbkdf2_hmac(
                "sha256", password.encode("utf-8"), _unb64(salt), int(rounds)
            )
            return hmac.compare_digest(digest, _unb64(expected))
        except (ValueError, TypeError):
            return False
    return hmac.compare_digest(password.encode("utf-8"), stored.encode("utf-8"))


# ---------------------------------------------------------------------------
# Bearer tokens
# ---------------------------------------------------------------------------


def _now() -> float:
    """The current time (a function of its own, so that tests can move it)."""
    return time.time()


def bearer_token(conn: HTTPConnection) -> str | None:
    """The bearer token of a request: the ``Authorization: Bearer`` header or,
    for websockets (browsers cannot set their headers), the ``token`` query
    parameter."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    if conn.scope.get("type") == "websocket":
        token = conn.query_params.get("token")
        if token:
            return token
    return None


class TokenSigner:
    """Signs and checks expiring bearer tokens naming a user.

    A token is ``{"u": username, "t": issued_at}`` signed with HMAC
    (itsdangerous, salt ``chancy.api.token``); it is valid for ``max_age``
    seconds after it was issued.
    """

    def __init__(self, secret_key: str, *, max_age: float = DEFAULT_TOKEN_MAX_AGE):
        if not isinstance(secret_key, str) or not secret_key:
            raise ValueError("secret_key must be a non-empty string")
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age!r}")
        self.max_age = max_age
        self._serializer = itsdangerous.URLSafeSerializer(secret_key, salt=_TOKEN_SALT)

    def create_token(self, username: str) -> str:
        """A token for ``username``, valid for ``max_age`` seconds from now."""
        return str(self._serializer.dumps({"u": username, "t": int(_now())}))

    def verify_token(self, token: str) -> str | None:
        """The username in ``token``, or ``None`` if it is forged, altered or expired."""
        try:
            data = self._serializer.loads(token)
        except (itsdangerous.BadData, ValueError, TypeError):
            return None
        if not isinstance(data, dict):
            return None
        username, issued = data.get("u"), data.get("t")
        if not isinstance(username, str) or not isinstance(issued, int):
            return None
        age = _now() - issued
        if age > self.max_age or age < -60:  # a minute of clock skew
            return None
        return username


# ---------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------


def _session(conn: HTTPConnection) -> Mapping[str, Any]:
    return conn.session if "session" in conn.scope else {}


class AuthBackend(AuthenticationBackend, abc.ABC):
    """Base class of the API's authentication backends.

    A Starlette authentication backend (:meth:`authenticate` returns
    ``(AuthCredentials(["authenticated"]), user)`` or ``None``) that can also
    log users in and out.
    """

    @abc.abstractmethod
    async def login(self, request: Request, username: str, password: str) -> bool:
        """Check the credentials; on success remember the user (in
        ``request.session``) and return ``True``."""

    @abc.abstractmethod
    async def logout(self, request: Request) -> None:
        """Forget the user of this session."""

    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[AuthCredentials, BaseUser] | None:
        """The credentials and user of a request, from its session by default."""
        username = _session(conn).get(_SESSION_KEY)
        if isinstance(username, str) and username:
            user = await self.get_user(username)
            if user is not None:
                return AuthCredentials([AUTHENTICATED]), user
        return None

    async def get_user(self, username: str) -> BaseUser | None:
        """The user named by a valid session or bearer token, or ``None`` if
        that user may no longer sign in. By default any name is accepted."""
        return SimpleUser(username)


class SimpleAuthBackend(AuthBackend):
    """Users from a ``{username: password}`` dict; sessions remember who logged in.

    Passwords may be plaintext (compatible with the original Chancy) or hashes
    made by :func:`hash_password` (recommended: the configuration then holds
    no password)::

        SimpleAuthBackend({"admin": hash_password("s3cret")})

    A user removed from the dict loses access at once, sessions and tokens
    included.
    """

    def __init__(self, users: dict[str, str]) -> None:
        if not isinstance(users, Mapping):
            raise TypeError(
                f"users must be a dict of username to password, got {type(users).__name__}"
            )
        for name, password in users.items():
            if not isinstance(name, str) or not isinstance(password, str):
                raise TypeError("users must map string usernames to string passwords")
        self.users = dict(users)
        self._dummy = hash_password(secrets.token_hex(8), iterations=1000)

    async def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is ``username``'s (hashes are checked off the event loop)."""
        stored = self.users.get(username)
        if stored is None:
            # Spend comparable time whether or not the user exists.
            verify_password(password, self._dummy)
            return False
        if is_password_hash(stored):
            return await asyncio.to_thread(verify_password, password, stored)
        return verify_password(password, stored)

    async def login(self, request: Request, username: str, password: str) -> bool:
        if not await self.check_password(username, password):
            return False
        request.session[_SESSION_KEY] = username
        return True

    async def logout(self, request: Request) -> None:
        if "session" in request.scope:
            request.session.pop(_SESSION_KEY, None)

    async def get_user(self, username: str) -> BaseUser | None:
        return SimpleUser(username) if username in self.users else None


class TokenAuthBackend(AuthBackend, TokenSigner):
    """Bearer tokens signed with ``secret_key`` and valid for ``max_age`` seconds
    (7 days by default), plus the session cookie.

    Tokens are read from ``Authorization: Bearer <token>`` (and from
    ``?token=`` on the websocket). Log in with ``users`` (a dict as for
    :class:`SimpleAuthBackend`), or override :meth:`check_credentials`; other
    services that share ``secret_key`` can mint tokens with
    :meth:`~chancy.plugins.web.auth.TokenSigner.create_token`::

        backend = TokenAuthBackend(os.environ["CHANCY_API_SECRET"], users={"ci": hash_password("…")})
        token = backend.create_token("ci")

    Tokens cannot be revoked one by one before they expire: change the secret
    key to revoke them all.
    """

    def __init__(
        self,
        secret_key: str,
        *,
        max_age: int = DEFAULT_TOKEN_MAX_AGE,
        users: dict[str, str] | None = None,
    ) -> None:
        TokenSigner.__init__(self, secret_key, max_age=max_age)
        self._users = SimpleAuthBackend(users) if users is not None else None

    async def check_credentials(self, username: str, password: str) -> bool:
        """Whether the credentials are valid: checked against ``users``; without
        ``users`` nobody can log in (tokens are minted elsewhere) unless a
        subclass overrides this."""
        if self._users is None:
            return False
        return await self._users.check_password(username, password)

    async def login(self, request: Request, username: str, password: str) -> bool:
        if not await self.check_credentials(username, password):
            return False
        request.session[_SESSION_KEY] = username
        return True

    async def logout(self, request: Request) -> None:
        if "session" in request.scope:
            request.session.pop(_SESSION_KEY, None)

    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[AuthCredentials, BaseUser] | None:
        token = bearer_token(conn)
        if token is not None:
            username = self.verify_token(token)
            if username is not None:
                user = await self.get_user(username)
                if user is not None:
                    return AuthCredentials([AUTHENTICATED]), user
        return await super().authenticate(conn)

    async def get_user(self, username: str) -> BaseUser | None:
        if self._users is not None:
            return await self._users.get_user(username)
        return SimpleUser(username)
