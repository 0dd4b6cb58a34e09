"""Every Python example in the README files and in docs/ runs against PostgreSQL.

The rules (written for authors in ``docs/CONTRIBUTING.md``):

* A fenced block tagged ``python`` is run. Blocks of one file run in order, in
  one namespace (a module registered in ``sys.modules``, so that the worker can
  import the job functions a file defines), and may use top-level ``await``.
* A block with any other language tag (``bash``, ``console``, ``toml``,
  ``text``...) is never run. A fence without a language tag, or tagged ``py``
  or ``python3``, is an error: every block says what it is.
* ``<!-- skip: next "why" -->`` right before a ``python`` block skips it; the
  reason is required. ``<!-- invisible-code-block: python ... -->`` runs code
  a reader does not need to see (creating a table the example writes to).
* The DSN ``postgresql://localhost/app`` in a block is replaced by the test
  database's (the ``chancy_dsn`` fixture of ``chancy.testing``) before the
  block runs. Each file starts and ends with an empty database.
* An invisible block that changes something for the rest of the file (Django
  settings, say) registers its undoing on ``doc_cleanup``, a
  :class:`contextlib.ExitStack` that is closed when the file is done.
* ``await worker.wait_for_shutdown()`` waits for SIGTERM in a real program;
  here it stops the worker at once (as the signal would) and returns, so that
  a service-style example ends.

Parsing is Sybil's (its Markdown lexers and skip directive); running is ours,
because the examples need top-level ``await`` on one event loop per file.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import SkipTest

import pytest
from sybil import Document, Example
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from chancy import Chancy, Worker

ROOT = Path(__file__).resolve().parent.parent

#: The DSN the examples use; replaced by the test database's.
EXAMPLE_DSN = "postgresql://localhost/app"

#: Longest any one example may take.
EXAMPLE_TIMEOUT = 60

_SKIPPED_DIRS = {"_build", "build", "dist", "node_modules", "results"}


def documents() -> list[Path]:
    """Every README.md of the repository and every Markdown page of docs/."""
    found = [
        path
        for path in ROOT.rglob("*.md")
        if (path.name == "README.md" or path.is_relative_to(ROOT / "docs"))
        and not any(
            part.startswith(".") or part in _SKIPPED_DIRS
            for part in path.relative_to(ROOT).parts[:-1]
        )
    ]
    return sorted(found)


DOCUMENTS = documents()

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$", re.MULTILINE
)
_SKIP = re.compile(r"<!--\s*skip:\s*(?P<args>.*?)\s*-->", re.DOTALL)
_PYTHON_ALIASES = {"py", "python3", "py3", "pycon", "ipython", "Python"}


def fences(text: str) -> Iterator[tuple[int, int, str, int]]:
    """``(start, end, language, line)`` of each outermost fenced code block."""
    opening: re.Match[str] | None = None
    for match in _FENCE.finditer(text):
        if opening is None:
            opening = match
            continue
        fence, info = match["fence"], match["info"].strip()
        closing = opening["fence"]
        if fence[0] == closing[0] and len(fence) >= len(closing) and not info:
            language = opening["info"].strip().split()
            line = text.count("\n", 0, opening.start()) + 1
            yield opening.start(), match.end(), language[0] if language else "", line
            opening = None
    if opening is not None:
        line = text.count("\n", 0, opening.start()) + 1
        yield opening.start(), len(text), "", line


def _inside_a_block(position: int, blocks: list[tuple[int, int, str, int]]) -> bool:
    return any(start < position < end for start, end, _, _ in blocks)


def fence_problems(text: str) -> list[str]:
    """Fences without a language or with a Python alias, and skips without a
    reason."""
    problems = []
    blocks = list(fences(text))
    for _, _, language, line in blocks:
        if not language:
            problems.append(f"line {line}: a code block without a language tag")
        elif language in _PYTHON_ALIASES:
            problems.append(
                f"line {line}: tag {language!r}: use 'python' (run) or 'text' (not run)"
            )
    for match in _SKIP.finditer(text):
        if _inside_a_block(match.start(), blocks):
            continue  # an example of the marker, in a text block
        line = text.count("\n", 0, match.start()) + 1
        if not re.fullmatch(r'next\s+"[^"]+"', match["args"]):
            problems.append(
                f'line {line}: write <!-- skip: next "reason" --> (a reason is required)'
            )
    return problems


def parse(path: Path, evaluator: Any = None) -> Document:
    """The document's ``python`` blocks, invisible blocks and skip markers.

    Markers and blocks quoted inside another code block (a ``text`` block
    showing how to write one) are text, not examples.
    """
    document = Document.parse(
        str(path), CodeBlockParser("python", evaluator), SkipParser()
    )
    blocks = list(fences(document.text))
    document.regions = [
        (start, region)
        for start, region in document.regions
        if not _inside_a_block(start, blocks)
    ]
    return document


#: The documents with something to run.
RUNNABLE = [path for path in DOCUMENTS if parse(path).regions]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_says_whether_it_runs(path: Path) -> None:
    assert fence_problems(path.read_text(encoding="utf-8")) == []


def test_the_marking_rules_are_enforced() -> None:
    text = "```\nx\n```\n\n```py\nx\n```\n\n<!-- skip: next -->\n```python\nx\n```\n"
    assert len(fence_problems(text)) == 3
    fine = '````markdown\n```\nnested\n```\n````\n<!-- skip: next "why" -->\n'
    assert fence_problems(fine) == []
    quoted = "```text\n<!-- skip: next -->\n```\n"
    assert fence_problems(quoted) == []


# ---------------------------------------------------------------------------
# Running the examples
# ---------------------------------------------------------------------------


class _Runner:
    """Evaluates one document's ``python`` blocks on one event loop."""

    def __init__(self, dsn: str, loop: asyncio.AbstractEventLoop) -> None:
        self.dsn = dsn
        self.loop = loop
        self.ran = 0

    def __call__(self, example: Example) -> None:
        __tracebackhide__ = True
        source = str(example.parsed).replace(EXAMPLE_DSN, self.dsn)
        # Pad with newlines so that tracebacks give the line in the file.
        padded = "\n" * (example.line + example.parsed.line_offset) + source
        code = compile(
            padded,
            example.path,
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,
        )
        result = eval(code, example.namespace)
        if inspect.iscoroutine(result):
            self.loop.run_until_complete(asyncio.wait_for(result, EXAMPLE_TIMEOUT))
        self.ran += 1


async def _stop_instead_of_waiting(self: Worker) -> None:
    """``Worker.wait_for_shutdown`` under the doc tests: stop now, as SIGTERM would."""
    await self.stop()


async def _close(namespace: dict[str, Any]) -> None:
    """Stop the workers and close the apps an example left open."""
    from chancy.testing import _close_pools

    for value in list(namespace.values()):
        if isinstance(value, Worker):
            await value.stop()
    for value in list(namespace.values()):
        if isinstance(value, Chancy):
            await _close_pools(value)


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


def _forget_sentry() -> None:
    """Close a Sentry client an example initialised (and send nothing more)."""
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is not None and sentry_sdk.get_client().is_active():
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


@contextlib.contextmanager
def _document_module(path: Path) -> Iterator[types.ModuleType]:
    """A module whose namespace the document's examples share."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    slug = re.sub(r"\W", "_", str(where.with_suffix("")))
    module = types.ModuleType(f"chancy_docs_{slug}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        sys.modules.pop(module.__name__, None)


def run_document(path: Path, dsn: str) -> tuple[int, list[str]]:
    """Run the examples of ``path`` in order; return how many ran and the skips.

    An example that raises fails the run, with a note naming its file and line.
    The database is emptied before and after.
    """
    from chancy.testing import _reset_schema

    loop = asyncio.new_event_loop()
    runner = _Runner(dsn, loop)
    skipped: list[str] = []
    try:
        loop.run_until_complete(_reset_schema(dsn))
        document = parse(path, runner)
        with _document_module(path) as module, contextlib.ExitStack() as cleanup:
            document.namespace = module.__dict__
            module.doc_cleanup = cleanup  # type: ignore[attr-defined]
            try:
                for example in document.examples():
                    try:
                        example.evaluate()
                    except SkipTest as skip:
                        skipped.append(f"line {example.line}: {skip}")
                    except BaseException as exc:
                        exc.add_note(f"in the example at {path}:{example.line}")
                        raise
            finally:
                loop.run_until_complete(_close(module.__dict__))
    finally:
        _forget_sentry()
        _cancel_pending(loop)
        loop.run_until_complete(_reset_schema(dsn))
        loop.close()
    return runner.ran, skipped


@pytest.fixture
def doc_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Worker.wait_for_shutdown`` stops the worker instead of waiting."""
    monkeypatch.setattr(Worker, "wait_for_shutdown", _stop_instead_of_waiting)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(
    path: Path, chancy_dsn: str, request: pytest.FixtureRequest, doc_tests: None
) -> None:
    uses_django = "from django" in path.read_text(encoding="utf-8")
    if uses_django:
        request.getfixturevalue("django_settings")
    try:
        ran, skipped = run_document(path, chancy_dsn)
    finally:
        if uses_django:
            from chancy.testing import _close_django_connections

            _close_django_connections()
    assert ran + len(skipped) > 0


def test_a_wrong_example_fails_and_names_its_line(
    tmp_path: Path, chancy_dsn: str, doc_tests: None
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n"
        "```python\n"
        "from chancy import Chancy\n\n"
        'async with Chancy("postgresql://localhost/app") as chancy:\n'
        "    await chancy.migrate()\n"
        "    dsn = chancy.dsn\n"
        "```\n\n"
        '<!-- skip: next "shows a mistake" -->\n'
        "```python\n"
        "undefined_name\n"
        "```\n\n"
        "```console\n"
        "$ not run\n"
        "```\n\n"
        "```python\n"
        "assert 'localhost/app' not in dsn\n"
        "await chancy.get_queue('missing')\n"
        "```\n",
        encoding="utf-8",
    )
    with pytest.raises(KeyError) as failure:
        run_document(page, chancy_dsn)
    assert f"in the example at {page}:20" in failure.value.__notes__
    # The traceback points into the Markdown file, at the failing line.
    assert any(
        entry.path == page and entry.lineno + 1 == 22 for entry in failure.traceback
    )

    page.write_text(page.read_text().replace("await chancy.get_queue('missing')\n", ""))
    ran, skipped = run_document(page, chancy_dsn)
    assert (ran, skipped) == (2, ["line 12: shows a mistake"])
