"""MkDocs hook: the predictor's OpenAPI document, generated from the app at build time.

The site publishes ``openapi.json`` exactly as ``GET /openapi.json`` serves it, and the API
page lists its operations, so the documented API cannot drift from the one the app serves:
nothing here is written by hand. The app is built on a throwaway state folder and never
started (no lifespan, no learning thread, no Redis, no MLflow).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

DOCUMENT = "openapi.json"
# Where a page wants the table of operations.
OPERATIONS_MARKER = "<!-- openapi-operations -->"
_METHODS = ("get", "post", "put", "patch", "delete")


@cache
def openapi_document() -> str:
    """The document the predictor serves at ``/openapi.json``, with default settings."""
    from latency_oracle.predictor.app import create_app
    from latency_oracle.settings import Settings

    with tempfile.TemporaryDirectory() as state:
        settings = Settings(mlflow_enabled=False, redis_url=None, state_dir=Path(state))
        document = asyncio.run(_served_document(create_app(settings)))
    return json.dumps(document, indent=2)


async def _served_document(app: Any) -> dict[str, Any]:
    """Asked over ASGI, which runs no lifespan: the service is built, never started."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://docs") as client:
        answer = await client.get("/openapi.json")
    answer.raise_for_status()
    return answer.json()


def operations_table(document: dict[str, Any]) -> str:
    """One markdown row per operation: method, path, summary and the answers it declares."""
    rows = ["| Method | Path | What it does | Answers |", "| --- | --- | --- | --- |"]
    for path, item in document["paths"].items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            summary = operation.get("summary", "").replace("|", "\\|")
            answers = ", ".join(sorted(operation.get("responses", {})))
            rows.append(f"| `{method.upper()}` | `{path}` | {summary} | {answers} |")
    return "\n".join(rows)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, DOCUMENT, content=openapi_document()))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if OPERATIONS_MARKER not in markdown:
        return markdown
    table = operations_table(json.loads(openapi_document()))
    return markdown.replace(OPERATIONS_MARKER, table)
