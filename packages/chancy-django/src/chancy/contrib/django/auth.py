"""Log in to the Chancy dashboard and API with Django accounts.

Needs ``chancy-web`` (for :class:`~chancy.plugins.web.auth.AuthBackend`) and a
configured Django project::

    import django
    from chancy import Chancy
    from chancy.contrib.django.auth import DjangoAuthBackend
    from chancy.plugins.web import Api
    from django.conf import settings

    django.setup()  # or let the backend call it on first use

    chancy = Chancy(
        settings.DATABASES["default"],
        plugins=[Api(authentication_backend=DjangoAuthBackend())],
    )

Only active **superusers** may log in. Credentials are checked with Django's
``aauthenticate`` (so every backend in ``AUTHENTICATION_BACKENDS`` and
Django's password hashers apply). Like the other backends, a login stores the
username in the dashboard's own session (not in Django's sessions) and the API
also issues a bearer token; every request authenticated by either checks again
that the account exists, is active and is a superuser, so deactivating or
demoting a user revokes their sessions and tokens at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from chancy.contrib.django._shared import ensure_django_setup

try:
    from starlette.authentication import BaseUser, SimpleUser

    from chancy.plugins.web.auth import AuthBackend
except ImportError as exc:  # pragma: no cover - exercised without chancy-web
    raise ImportError(
        "chancy.contrib.django.auth needs the web plugin:"
        ' pip install "chancy-django[web]" (or chancy-web)'
    ) from exc

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["DjangoAuthBackend", "DjangoUser"]

# The session key read by AuthBackend.authenticate (the documented contract of
# chancy.plugins.web.auth: the logged-in username is ``session["username"]``).
_SESSION_KEY: Final = "username"


class DjangoUser(SimpleUser):
    """A dashboard user backed by a Django account (``django_user``)."""

    def __init__(self, django_user: Any) -> None:
        super().__init__(django_user.get_username())
        self.django_user = django_user

    @property
    def display_name(self) -> str:
        full_name = getattr(self.django_user, "get_full_name", None)
        name = full_name() if callable(full_name) else ""
        return str(name or self.username)

    @property
    def identity(self) -> str:
        return str(self.django_user.pk)


class DjangoAuthBackend(AuthBackend):
    """Dashboard and API logins for Django superusers.

    Subclass and override :meth:`is_allowed` to admit other accounts (for
    example staff members with a given permission).
    """

    def is_allowed(self, user: Any) -> bool:
        """Whether this Django user may use the dashboard: active superusers."""
        return bool(
            getattr(user, "is_active", False) and getattr(user, "is_superuser", False)
        )

    async def login(self, request: Request, username: str, password: str) -> bool:
        ensure_django_setup("DjangoAuthBackend")
        from django.contrib import auth

        if hasattr(auth, "aauthenticate"):  # Django >= 5.0
            user = await auth.aauthenticate(
                request=None, username=username, password=password
            )
        else:  # pragma: no cover - Django 4.2
            from asgiref.sync import sync_to_async

            user = await sync_to_async(auth.authenticate)(
                request=None, username=username, password=password
            )
        if user is None or not self.is_allowed(user):
            return False
        request.session[_SESSION_KEY] = user.get_username()
        return True

    async def logout(self, request: Request) -> None:
        if "session" in request.scope:
            request.session.pop(_SESSION_KEY, None)

    async def get_user(self, username: str) -> BaseUser | None:
        """The Django account ``username`` if it may still use the dashboard
        (called for every request with a session or a bearer token)."""
        ensure_django_setup("DjangoAuthBackend")
        from asgiref.sync import sync_to_async

        user = await sync_to_async(self._load_user)(username)
        return DjangoUser(user) if user is not None else None

    def _load_user(self, username: str) -> Any:
        from django.contrib.auth import get_user_model

        model = get_user_model()
        try:
            user = model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            return None
        return user if self.is_allowed(user) else None
