"""``chancy worker web`` (also ``chancy web``): serve only the API and dashboard.

::

    chancy --app myproject.tasks:chancy worker web --port 8000 -o https://ops.example.com

Runs the app's :class:`~chancy.plugins.api.Api` plugin (and the Metrics
plugin's loop, so that cluster metrics load) with a worker that serves no
queue. Without an ``Api`` plugin in the app, one is created with a
:class:`~chancy.plugins.api.auth.SimpleAuthBackend` user ``admin`` and a
random password, printed on standard error. Options given on the command line
override the app's ``Api`` settings. No other origin may use the API unless
``--allow-origin`` names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from typing import Any

import click
from click.core import ParameterSource

from chancy.cli import get_app, run_with_app

__all__ = ["web_command", "worker_group"]

_EXPLICIT = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in _EXPLICIT


@click.command("web")
@click.option(
    "--host", "-h", default="localhost", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option("--debug", "-d", is_flag=True, help="Tracebacks in error responses.")
@click.option(
    "--allow-origin",
    "-o",
    "allow_origins",
    multiple=True,
    metavar="ORIGIN",
    help=(
        "Origin (https://host[:port]) whose pages may use the API with the"
        " session cookie (repeatable; none by default). '*' lets any origin in"
        " with a bearer token only."
    ),
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help=(
        "Host name the dashboard is reached by (repeatable; '.example.com' for"
        " a domain and its subdomains). Default: the loopback names when"
        " listening on a loopback address."
    ),
)
@click.pass_context
def web_command(
    ctx: click.Context,
    host: str,
    port: int,
    debug: bool,
    allow_origins: tuple[str, ...],
    allowed_hosts: tuple[str, ...],
) -> None:
    """Serve the web API and dashboard (no jobs are run) until Ctrl-C."""
    from chancy.plugins.web.auth import SimpleAuthBackend, hash_password
    from chancy.plugins.web.plugin import IDENTIFIER, Api

    app = get_app(ctx)
    api = app.plugins.get(IDENTIFIER)
    if isinstance(api, Api):
        if _explicit(ctx, "host"):
            api.host = host
        if _explicit(ctx, "port"):
            api.port = port
        if _explicit(ctx, "debug"):
            api.debug = debug
        if _explicit(ctx, "allow_origins"):
            api.allow_origins = list(allow_origins)
        if _explicit(ctx, "allowed_hosts"):
            api.allowed_hosts = list(allowed_hosts)
    else:
        password = secrets.token_urlsafe(12)
        api = Api(
            host=host,
            port=port,
            debug=debug,
            allow_origins=list(allow_origins),
            allowed_hosts=list(allowed_hosts) or None,
            # Per process, like the password: nothing to share across restarts.
            secret_key=secrets.token_urlsafe(48),
            authentication_backend=SimpleAuthBackend(
                {"admin": hash_password(password)}
            ),
        )
        click.echo(
            "Warning: the app has no Api plugin; serving one with the user 'admin'"
            f" and the password {password!r} (valid until this command stops)",
            err=True,
        )

    async def main(chancy: Any) -> bool:
        from chancy.worker import Worker

        if not await chancy.is_up_to_date():
            return False
        worker = Worker(chancy, register_signal_handlers=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = []
        if sys.platform != "win32":
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
                installed.append(signum)
        manager = worker.manager
        try:
            if chancy.can_listen():
                # Database notifications feed the hub, hence the event stream.
                manager.add("chancy:listen", worker.listen)
            metrics = chancy.plugins.get("chancy.metrics")
            if metrics is not None and hasattr(metrics, "run"):
                manager.add(
                    "plugin:chancy.metrics", lambda: metrics.run(worker, chancy)
                )
            manager.add(f"plugin:{IDENTIFIER}", lambda: api.run(worker, chancy))
            said_waiting = False
            while not stop.is_set():
                signals = [stop.wait(), api.serving.wait()]
                if not said_waiting:
                    signals.append(api.waiting_for_port.wait())
                futures = [asyncio.ensure_future(s) for s in signals]
                await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
                for future in futures:
                    future.cancel()
                if stop.is_set():
                    break
                if api.serving.is_set():
                    click.echo(
                        "Serving the Chancy dashboard on"
                        f" http://{api.host}:{api.bound_port}/ (Ctrl-C to stop)"
                    )
                    await stop.wait()
                    break
                click.echo(
                    f"{api.host}:{api.port} is in use; waiting for it to become free"
                    " (Ctrl-C to stop)",
                    err=True,
                )
                said_waiting = True
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await manager.cancel_all()
        return True

    with contextlib.suppress(KeyboardInterrupt):
        if not run_with_app(ctx, main):
            raise click.ClickException(
                "the database schema is not up to date; run `chancy --app"
                " IMPORT_PATH migrate` first"
            )


@click.group("worker")
def worker_group() -> None:
    """Run workers."""


worker_group.add_command(web_command)
