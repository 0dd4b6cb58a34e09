"""Sphinx configuration of Chancy's documentation.

Build it with ``hatch run docs:build`` (see ``docs/CONTRIBUTING.md``): the pages
are Markdown (MyST), the API reference comes from the docstrings (autodoc),
and every warning, broken cross reference included, fails the build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import chancy

ROOT = Path(__file__).resolve().parent.parent

project = "Chancy"
author = "The Chancy authors"
copyright = "the Chancy authors, MIT licence"
release = version = chancy.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# -- MyST ---------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
# "#how-it-runs" style links to headings, as on GitHub.
myst_heading_anchors = 3

# -- autodoc --------------------------------------------------------------------

autodoc_default_options = {
    "member-order": "bysource",
    "show-inheritance": True,
}
# Keep signatures short; the types are listed with the parameters.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
autodoc_class_signature = "separated"
autodoc_inherit_docstrings = False

# -- cross references -------------------------------------------------------------

# -n (nitpicky) reports every reference that does not resolve. Chancy's own
# names must all resolve. The standard library and third-party packages have no
# inventory here (intersphinx would download one at build time), so references
# to them are shown as plain text instead of links.
nitpicky = True
_EXTERNAL = (
    "abc|asyncio|collections|concurrent|contextlib|datetime|enum|json|logging|"
    "multiprocessing|os|pathlib|re|signal|threading|types|typing|uuid|zoneinfo|"
    "attr|attrs|click|croniter|django|django_tasks|pluggy|psycopg|psycopg_pool|"
    "opentelemetry|pytest|pytest_asyncio|sentry_sdk|starlette|uvicorn|_pytest"
)
_BUILTINS = (
    "Any|Awaitable|AsyncIterator|Callable|ClassVar|Coroutine|Final|Iterable|"
    "Iterator|Literal|Mapping|MutableMapping|Self|Sequence|TypeAlias|TypeVar|"
    "bool|bytes|dict|float|int|list|object|set|frozenset|str|tuple|type|None|"
    "BaseException|Exception|ValueError|TypeError|KeyError|RuntimeError|"
    "TimeoutError|LookupError|ImportError|AttributeError|NotImplementedError|"
    "OSError|ConnectionError|SystemExit|KeyboardInterrupt|"
    "AsyncConnection|AsyncConnectionPool|AsyncCursor|ConnectionPool|Cursor|"
    "Composable|Composed|SQL|Request|Response|JSONResponse|WebSocket|Starlette|"
    "BaseRoute|Route|AuthenticationBackend|ZoneInfo|UUID|datetime|timedelta|"
    "Event|Task|Command|Group|HookimplMarker|HookspecMarker|PluginManager|"
    "FixtureRequest|TracebackType|ModuleType|Path|Logger|LoggerAdapter|Enum|"
    "tzinfo|AttributeValue|Context"
)
nitpick_ignore_regex = [
    (r"py:.*", rf"(?:{_EXTERNAL})(?:\..+)?"),
    (r"py:.*", rf"(?:{_BUILTINS})"),
    # Type variables of signatures (chancy.job.F) and of pluggy's markers.
    (r"py:class", r"(?:chancy\.job\.)?_?F"),
    # ... and of chancy.maintenance's decorator and alias (_S, _P, _T).
    (r"py:(?:class|obj)", r"~?(?:chancy\.maintenance\.)?_[SPT]"),
]

# -- HTML -----------------------------------------------------------------------

html_theme = "furo"
html_title = f"Chancy {release}"
html_static_path: list[str] = []


# -- package READMEs ----------------------------------------------------------------

#: ``[text](../chancy-cron/README.md)`` or ``[text](../chancy-core)`` in a
#: package README: another distribution, whose page here is ``chancy-cron.md``.
_SIBLING_LINK = re.compile(r"\]\(\.\./(chancy-[a-z]+)(?:/README\.md)?(#[^)]*)?\)")


def _rewrite_readme_links(
    app: Any, relative_path: Path, parent_docname: str, content: list[str]
) -> None:
    """Point links between package READMEs at the pages that include them.

    Each page under ``docs/packages/`` includes its distribution's README.md
    (``{include}``), so the text cannot drift from what PyPI shows; the links
    the READMEs make to each other are rewritten here, as they are read.
    """
    parts = Path(relative_path).parts
    if "packages" in parts and parts[-1] == "README.md":
        content[0] = _SIBLING_LINK.sub(r"](/packages/\1.md\2)", content[0])


# -- names documented where they are imported from -------------------------------


def _resolve_through_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``chancy.job.QueuedJob.State`` as ``chancy.QueuedJob.State``.

    Classes are documented under the name users import (``chancy.QueuedJob``),
    and autodoc registers their defining path (``chancy.job.QueuedJob``) as an
    alias. Type hints name members of such classes by the defining path;
    Sphinx knows the alias of the class but not of its members, so this
    resolves them through the class.
    """
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target = node["reftarget"]
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        entry = domain.objects.get(".".join(parts[:cut]))
        if entry is not None and entry.aliased:
            new_target = ".".join([entry.node_id, *parts[cut:]])
            return domain.resolve_xref(
                env,
                node.get("refdoc", ""),
                app.builder,
                node["reftype"],
                new_target,
                node,
                contnode,
            )
    return None


def _job_means_the_job_class(app: Any, doctree: Any) -> None:
    """Read a bare ``Job`` in a type hint as :class:`chancy.Job`.

    ``chancy.rule`` documents a ``Job`` too (the job fields of a rule), so
    Sphinx's fuzzy lookup of type-hint names finds several; outside
    ``chancy.rule`` the hints always mean the job class.
    """
    from sphinx.addnodes import pending_xref

    for node in doctree.findall(pending_xref):
        if (
            node.get("refdomain") == "py"
            and node.get("reftarget") == "Job"
            and not (node.get("py:module") or "").startswith("chancy.rule")
        ):
            node["reftarget"] = "chancy.Job"
            node["refspecific"] = False


# -- a module that needs a newer Python ----------------------------------------------


def _subinterpreter_section(app: Any, docname: str, source: list[str]) -> None:
    """Document ``chancy.executors.sub`` where it can be imported.

    It needs Python 3.14 (or 3.13 with a backport); on an older Python the
    page says so instead of failing the build.
    """
    if docname != "reference/executors":
        return
    try:
        import chancy.executors.sub  # noqa: F401
    except ImportError as exc:
        text = (
            "``chancy.executors.sub.SubInterpreterExecutor`` runs jobs in"
            " sub-interpreters. This documentation was built on Python"
            f" {sys.version_info.major}.{sys.version_info.minor}, where it cannot be"
            f" imported ({exc}), so its reference is not included here.\n"
        )
    else:
        text = ".. automodule:: chancy.executors.sub\n   :members:\n"
    source[0] = source[0].replace(".. sub-interpreters::\n", text)


# -- the HTTP API reference, from chancy-web's OpenAPI document --------------------

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _openapi import generate

# Written before the build reads anything (html_extra_path must exist).
generate()
html_extra_path = ["_generated/openapi.json"]
exclude_patterns.append("_generated")


def setup(app: Any) -> dict[str, Any]:
    app.connect("include-read", _rewrite_readme_links)
    app.connect("missing-reference", _resolve_through_alias)
    app.connect("source-read", _subinterpreter_section)
    app.connect("doctree-read", _job_means_the_job_class)
    return {"parallel_read_safe": True}
