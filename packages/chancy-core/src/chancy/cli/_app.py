"""Loading the app named by ``--app``, and the state the root command keeps."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from chancy.app import Chancy

__all__ = ["CliState", "get_app", "load_app"]


def _ensure_cwd_importable() -> None:
    """Put the current directory on ``sys.path``, as ``python -m`` would."""
    try:
        cwd = os.getcwd()
    except OSError:  # the directory was removed
        return
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _app_error(path: str, message: str) -> click.UsageError:
    return click.UsageError(
        f"--app {path!r}: {message}", click.get_current_context(silent=True)
    )


def _resolve_attribute(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _import_module(path: str, name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            name == exc.name or name.startswith(exc.name + ".")
        ):
            raise _app_error(
                path,
                f"no module named {exc.name!r} (is the current directory, or the"
                " package, importable?)",
            ) from None
        raise _app_error(path, f"importing {name!r} failed: {exc}") from None
    except Exception as exc:
        raise _app_error(
            path, f"importing {name!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def _import_object(path: str) -> Any:
    """The object named by ``module:attr`` or ``module.attr`` (attr may be dotted)."""
    if ":" in path:
        module_name, _, attribute = path.partition(":")
        if not module_name or not attribute:
            raise _app_error(path, "expected 'module:attribute'")
        module = _import_module(path, module_name)
        try:
            return _resolve_attribute(module, attribute)
        except AttributeError:
            raise _app_error(
                path, f"module {module_name!r} has no attribute {attribute!r}"
            ) from None

    parts = path.split(".")
    if len(parts) < 2 or not all(parts):
        raise _app_error(path, "expected 'module:attribute' or 'module.attribute'")
    missing: ModuleNotFoundError | None = None
    # The longest importable prefix is the module; the rest is the attribute.
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (
                module_name == exc.name or module_name.startswith(exc.name + ".")
            ):
                missing = missing or exc
                continue
            raise _app_error(path, f"importing {module_name!r} failed: {exc}") from None
        except Exception as exc:
            raise _app_error(
                path, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        attribute = ".".join(parts[i:])
        try:
            return _resolve_attribute(module, attribute)
        except AttributeError:
            if missing is not None:
                raise _app_error(path, f"no module named {missing.name!r}") from None
            raise _app_error(
                path, f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    assert missing is not None
    raise _app_error(
        path,
        f"no module named {missing.name!r} (is the current directory, or the"
        " package, importable?)",
    )


def load_app(path: str) -> Chancy:
    """Import the app named by ``path`` (``module:attr`` or ``module.attr``).

    The object is used if it is a :class:`~chancy.Chancy`; otherwise it is
    called without arguments and must return one.

    :raises click.UsageError: the module or attribute is missing, or the
        object is not (and does not return) a Chancy app.
    """
    _ensure_cwd_importable()
    obj = _import_object(path)
    if isinstance(obj, Chancy):
        return obj
    if not callable(obj):
        raise _app_error(
            path,
            f"is a {type(obj).__name__}, not a Chancy app or a factory returning one",
        )
    try:
        app = obj()
    except Exception as exc:
        raise _app_error(
            path, f"calling the factory failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(app, Chancy):
        raise _app_error(
            path, f"the factory returned a {type(app).__name__}, not a Chancy app"
        )
    return app


class CliState:
    """What the root command stores in ``ctx.obj``: the ``--app`` path and,
    once loaded, the app itself (loaded on first use)."""

    __slots__ = ("_app", "app_path")

    def __init__(self, app_path: str | None, app: Chancy | None = None) -> None:
        self.app_path = app_path or None
        self._app = app

    @property
    def has_app(self) -> bool:
        """Whether an app was given (it may not be loaded yet)."""
        return self._app is not None or self.app_path is not None

    def get_app(self) -> Chancy:
        if self._app is None:
            if self.app_path is None:
                raise click.UsageError(
                    "this command needs the application: pass --app/-a"
                    " MODULE:ATTRIBUTE or set CHANCY_APP",
                    click.get_current_context(silent=True),
                )
            self._app = load_app(self.app_path)
        return self._app

    @property
    def display_path(self) -> str:
        return self.app_path or "IMPORT_PATH"


def _state(ctx: click.Context | None = None) -> CliState:
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:
        app = ctx.find_object(Chancy)
        state = CliState(None, app)
    return state


def get_app(ctx: click.Context | None = None) -> Chancy:
    """The app given with ``--app`` (imported on first use).

    For commands, including those added by plugins::

        @click.command()
        @click.pass_context
        def stats(ctx):
            app = get_app(ctx)

    :param ctx: the click context (default: the current one).
    :raises click.UsageError: no ``--app`` was given or it cannot be loaded.
    """
    return _state(ctx).get_app()
