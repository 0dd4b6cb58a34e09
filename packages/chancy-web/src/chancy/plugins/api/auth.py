"""Authentication backends of the API (see :mod:`chancy.plugins.web.auth`)."""

from __future__ import annotations

from chancy.plugins.web.auth import (
    AuthBackend,
    SimpleAuthBackend,
    TokenAuthBackend,
    TokenSigner,
    bearer_token,
    hash_password,
    is_password_hash,
    verify_password,
)

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
