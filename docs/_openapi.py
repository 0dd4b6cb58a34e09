"""Render chancy-web's OpenAPI document as the HTTP API reference page.

Run when the docs are built (``docs/conf.py``): the document is generated from
the route declarations of the core API and of the plugins installed in the
docs environment (cron, workflow, metrics), exactly as a server serves it at
``GET /api/v1/openapi.json``, so this page cannot drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def openapi_document() -> dict[str, Any]:
    from chancy import Chancy
    from chancy.plugins.web import Api
    from chancy.plugins.web.auth import SimpleAuthBackend
    from chancy.plugins.web.openapi import build_document

    api = Api(authentication_backend=SimpleAuthBackend({}))
    chancy = Chancy("postgresql://localhost/docs", plugins=[api])
    routes = api.web_contributions(chancy).routes
    return build_document(routes, cookie_name="chancy_session_…")


def _schema_text(schema: Any) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False)


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def render(document: dict[str, Any]) -> str:
    lines = [
        "<!-- Generated at build time by docs/_openapi.py; do not edit. -->",
        "",
        (
            f"OpenAPI {document['openapi']}, API version"
            f" {document['info']['version']}. The same document is served by every"
            " server at `GET /api/v1/openapi.json` (with the plugins it runs); this"
            " build's copy is the file `openapi.json` at the root of these pages."
        ),
        "",
    ]
    for path, item in sorted(document["paths"].items()):
        for method, operation in item.items():
            lines.append(f"### `{method.upper()} {path}`")
            lines.append("")
            summary = operation.get("summary") or ""
            description = operation.get("description") or ""
            if summary:
                lines.append(summary)
                lines.append("")
            if description and description != summary:
                lines.append(description)
                lines.append("")
            secured = operation.get("security", document.get("security"))
            lines.append(
                "Needs a login (bearer token or session cookie)."
                if secured
                else "No login needed."
            )
            lines.append("")
            params = operation.get("parameters") or []
            if params:
                lines.append("| Parameter | In | Type | Required | Meaning |")
                lines.append("|---|---|---|---|---|")
                for param in params:
                    schema = param.get("schema") or {}
                    kind = schema.get("type") or _ref_name(schema) or "any"
                    text = (param.get("description") or "").replace("|", "\\|")
                    lines.append(
                        f"| `{param['name']}` | {param['in']} | {kind} |"
                        f" {'yes' if param.get('required') else 'no'} | {text} |"
                    )
                lines.append("")
            body = operation.get("requestBody")
            if body:
                schema = (
                    body.get("content", {})
                    .get("application/json", {})
                    .get("schema", {})
                )
                lines.append("Request body (`application/json`):")
                lines.append("")
                lines.append("```json")
                lines.append(_schema_text(schema))
                lines.append("```")
                lines.append("")
            lines.append("| Status | Answer |")
            lines.append("|---|---|")
            for status, reply in sorted(operation.get("responses", {}).items()):
                text = (reply.get("description") or "").replace("|", "\\|")
                content = reply.get("content") or {}
                for media, spec in content.items():
                    name = _ref_name(spec.get("schema") or {})
                    if name:
                        text += f" (`{media}`, schema `{name}`)"
                        break
                lines.append(f"| {status} | {text} |")
            lines.append("")
    lines.append("## Schemas")
    lines.append("")
    for name, schema in sorted(
        document.get("components", {}).get("schemas", {}).items()
    ):
        lines.append(f"### `{name}`")
        lines.append("")
        lines.append("```json")
        lines.append(_schema_text(schema))
        lines.append("```")
        lines.append("")
    return "\n".join(lines)


def generate() -> None:
    """Write the page (included by ``http-api.md``) and the JSON document."""
    document = openapi_document()
    out = HERE / "_generated"
    out.mkdir(exist_ok=True)
    (out / "http-api-reference.md").write_text(render(document))
    (out / "openapi.json").write_text(json.dumps(document, indent=2))
