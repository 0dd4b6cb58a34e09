"""The web API and dashboard of Chancy.

Add the :class:`Api` plugin (also importable as ``chancy.plugins.api.Api``
and as ``Web``) to the app; every worker with it tries to serve the JSON API
and the dashboard on ``host:port`` (one worker per host gets the port, another
takes over when it stops)::

    from chancy import Chancy, Worker
    from chancy.plugins.api import Api
    from chancy.plugins.api.auth import SimpleAuthBackend, hash_password

    chancy = Chancy(
        "postgresql://localhost/app",
        plugins=[
            Api(
                port=8000,
                authentication_backend=SimpleAuthBackend(
                    {"admin": hash_password("correct horse battery staple")}
                ),
            )
        ],
    )

    async with chancy, Worker(chancy) as worker:
        await worker.wait_for_shutdown()

Or serve it on its own: ``chancy --app myapp:chancy worker web``. Mount it in
another Starlette or FastAPI application with :meth:`Api.build_starlette_app`.
Endpoints, settings and authentication are described in the package README.
"""

from __future__ import annotations

from chancy.plugins.web.auth import (
    AuthBackend,
    SimpleAuthBackend,
    TokenAuthBackend,
    hash_password,
    verify_password,
)
from chancy.plugins.web.extension import (
    ApiError,
    ApiPlugin,
    Param,
    Reply,
    RouteT,
    WebPage,
    WebRoute,
)
from chancy.plugins.web.plugin import Api, Web

__all__ = [
    "Api",
    "ApiError",
    "ApiPlugin",
    "AuthBackend",
    "Param",
    "Reply",
    "RouteT",
    "SimpleAuthBackend",
    "TokenAuthBackend",
    "Web",
    "WebPage",
    "WebRoute",
    "hash_password",
    "verify_password",
]
