"""Option types and output helpers shared by the commands (and by plugins')."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from chancy.app import Chancy

__all__ = [
    "EXECUTOR_ALIASES",
    "ExecutorType",
    "IsoDateTime",
    "format_table",
    "parse_kwargs_option",
]


#: Short executor names accepted by ``queue declare --executor``.
EXECUTOR_ALIASES: dict[str, str] = {
    "process": Chancy.Executor.Process.value,
    "threaded": Chancy.Executor.Threaded.value,
    "thread": Chancy.Executor.Threaded.value,
    "async": Chancy.Executor.Async.value,
    "sub": Chancy.Executor.SubInterpreter.value,
    "subinterpreter": Chancy.Executor.SubInterpreter.value,
}
_EXECUTOR_SHORT = {
    Chancy.Executor.Process.value: "process",
    Chancy.Executor.Threaded.value: "threaded",
    Chancy.Executor.Async.value: "async",
    Chancy.Executor.SubInterpreter.value: "sub",
}


if TYPE_CHECKING:
    # click >= 8.2 makes ParamType generic; older versions cannot subscript it.
    _DateTimeParam = click.ParamType[datetime]
    _StrParam = click.ParamType[str]
else:
    _DateTimeParam = _StrParam = click.ParamType


class IsoDateTime(_DateTimeParam):
    """An ISO 8601 date and time; without a time zone it is taken as UTC."""

    name = "ISO-DATETIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            result = value
        else:
            try:
                result = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(
                    f"{value!r} is not an ISO 8601 date and time"
                    " (e.g. 2030-01-31T12:00:00+00:00)",
                    param,
                    ctx,
                )
        if result.tzinfo is None:
            result = result.replace(tzinfo=UTC)
        return result


class ExecutorType(_StrParam):
    """A short executor name (process, threaded, async, sub) or an import path."""

    name = "EXECUTOR"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value).strip()
        alias = EXECUTOR_ALIASES.get(text.lower())
        if alias is not None:
            return alias
        if "." in text and all(text.split(".")):
            return text
        self.fail(
            f"{value!r} is neither one of {', '.join(sorted(EXECUTOR_ALIASES))}"
            " nor an import path like 'package.module.ExecutorClass'",
            param,
            ctx,
        )


def parse_kwargs_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> dict[str, Any]:
    """click callback: a ``--kwargs`` JSON object option (for plugin commands too)."""
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", ctx, param) from None
    if not isinstance(data, dict):
        raise click.BadParameter(
            f"must be a JSON object of keyword arguments, got {type(data).__name__}",
            ctx,
            param,
        )
    return data


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table with a dashed rule under the headers (for plugin commands too)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join(
        [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    )
