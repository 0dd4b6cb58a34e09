"""Authentication of the web API: backends, password hashes and bearer tokens.

Every protected endpoint accepts either a **session cookie** (set by ``POST
/api/v1/login``) or a **bearer token** (``Authorization: Bearer <token>``,
returned by the same login; for the websocket, which browsers cannot give
headers, the subprotocol ``chancy.token.<token>`` next to ``chancy``),
whatever the backend. Both name a server-side login that ``POST
/api/v1/logout`` revokes (see :mod:`chancy.plugins.web.sessions`).

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
    "WS_PROTOCOL",
    "WS_TOKEN_PREFIX",
    "AuthBackend",
    "SimpleAuthBackend",
    "TokenAuthBackend",
    "TokenSigner",
    "bearer_token",
    "hash_iterations",
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

#: The websocket subprotocol of the event stream; a client authenticates with
#: a second one, ``chancy.token.<bearer token>`` (never in the URL).
WS_PROTOCOL: Final = "chancy"
WS_TOKEN_PREFIX: Final = "chancy.token."

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


def hash_iterations(value: str) -> int | None:
    """The PBKDF2 rounds of a :func:`hash_password` hash (``None`` for plaintext)."""
    return int(value.split("$")[1]) if is_password_hash(value) else None


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
    for websockets (browsers cannot set their headers), a subprotocol
    ``chancy.token.<token>``. Never the URL, which logs and browser history
    keep."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    if conn.scope.get("type") == "websocket":
        for protocol in conn.scope.get("subprotocols") or ():
            if protocol.startswith(WS_TOKEN_PREFIX) and len(protocol) > len(
                WS_TOKEN_PREFIX
            ):
                return str(protocol[len(WS_TOKEN_PREFIX) :])
    return None


class TokenSigner:
    """Signs and checks expiring bearer tokens naming a user.

    A token is ``{"u": username, "t": issued_at}`` signed with HMAC
    (itsdangerous, salt ``chancy.api.token``); it is valid for ``max_age``
    seconds after it was issued. Tokens returned by the API's login also name
    their server-side login (``"s"``), so logging out revokes them.
    """

    def __init__(self, secret_key: str, *, max_age: float = DEFAULT_TOKEN_MAX_AGE):
        if not isinstance(secret_key, str) or not secret_key:
            raise ValueError("secret_key must be a non-empty string")
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age!r}")
        self.max_age = max_age
        self._serializer = itsdangerous.URLSafeSerializer(secret_key, salt=_TOKEN_SALT)

    def create_token(self, username: str, *, session_id: str | None = None) -> str:
        """A token for ``username``, valid for ``max_age`` seconds from now
        (and, with ``session_id``, while that login is not revoked)."""
        data: dict[str, Any] = {"u": username, "t": int(_now())}
        if session_id is not None:
            data["s"] = session_id
        return str(self._serializer.dumps(data))

    def verify_claims(self, token: str) -> dict[str, Any] | None:
        """The contents of ``token`` (``u``: user, ``t``: issued at, ``s``:
        session id if any), or ``None`` if it is forged, altered or expired."""
        if not isinstance(token, str) or len(token) > 4096:
            return None
        try:
            data = self._serializer.loads(token)
        except (itsdangerous.BadData, ValueError, TypeError):
            return None
        if not isinstance(data, dict):
            return None
        username, issued, session = data.get("u"), data.get("t"), data.get("s")
        if (
            not isinstance(username, str)
            or not isinstance(issued, int)
            or isinstance(issued, bool)
            or not (session is None or isinstance(session, str))
        ):
            return None
        age = _now() - issued
        if age > self.max_age or age < -60:  # a minute of clock skew
            return None
        return data

    def verify_token(self, token: str) -> str | None:
        """The username in ``token``, or ``None`` if it is forged, altered or
        expired (revocation is checked by the API, which keeps the logins)."""
        claims = self.verify_claims(token)
        return None if claims is None else str(claims["u"])


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
        self._dummy_plain = secrets.token_urlsafe(24)
        self._dummies: dict[int, str] = {}
        strongest = self._strongest()
        if strongest:  # made now, so that no login pays for it
            self._dummy_hash(strongest)

    def _strongest(self) -> int:
        """The highest PBKDF2 iteration count among the stored hashes (0: none)."""
        return max((hash_iterations(pw) or 0 for pw in self.users.values()), default=0)

    def plaintext_users(self) -> list[str]:
        """The users whose password is stored in plaintext (not a hash)."""
        return sorted(
            name for name, pw in self.users.items() if not is_password_hash(pw)
        )

    def _dummy_hash(self, iterations: int) -> str:
        dummy = self._dummies.get(iterations)
        if dummy is None:
            dummy = self._dummies[iterations] = hash_password(
                secrets.token_urlsafe(16), iterations=iterations
            )
        return dummy

    async def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is ``username``'s.

        Every check costs the same whether or not the user exists: when any
        password is hashed, an unknown user (or one with a plaintext password)
        is checked against a dummy hash of the strongest iteration count in
        use, off the event loop like a real hash; with plaintext passwords
        only, against a dummy plaintext password. So the time a wrong login
        takes does not tell which usernames exist.
        """
        stored = self.users.get(username)
        if stored is not None and is_password_hash(stored):
            return await asyncio.to_thread(verify_password, password, stored)
        strongest = self._strongest()
        if strongest:
            await asyncio.to_thread(
                verify_password, password, self._dummy_hash(strongest)
            )
        else:
            verify_password(password, self._dummy_plain)
        return stored is not None and verify_password(password, stored)

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

    Tokens are read from ``Authorization: Bearer <token>`` (and from the
    ``chancy.token.<token>`` subprotocol on the websocket). Log in with
    ``users`` (a dict as for :class:`SimpleAuthBackend`), or override
    :meth:`check_credentials`; other services that share ``secret_key`` can
    mint tokens with :meth:`~chancy.plugins.web.auth.TokenSigner.create_token`::

        backend = TokenAuthBackend(os.environ["CHANCY_API_SECRET"], users={"ci": hash_password("…")})
        token = backend.create_token("ci")

    Tokens returned by the API's login are revoked by ``POST
    /api/v1/logout``; a minted token is revoked when it is presented to the
    logout (it is then refused until it expires). Change the secret key to
    revoke every token at once.
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

    @property
    def users(self) -> dict[str, str] | None:
        """The users who may log in (``None``: tokens are minted elsewhere)."""
        return self._users.users if self._users is not None else None

    def plaintext_users(self) -> list[str]:
        """The users whose password is stored in plaintext (not a hash)."""
        return self._users.plaintext_users() if self._users is not None else []

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
