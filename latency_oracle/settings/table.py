"""Rendering the settings table the docs carry (``docs/settings.md``), from the settings class."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

TABLE_HEADER = "| Variable | Default | Meaning |"


def render_settings_table(settings_class: type[BaseModel], env_prefix: str) -> str:
    """One markdown row per field: its environment variable, default and meaning."""
    lines = [TABLE_HEADER, "| --- | --- | --- |"]
    for name, field in settings_class.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        elif isinstance(default, dict):
            default = json.dumps(default)
        lines.append(f"| `{env_prefix}{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines)


def replace_settings_table(markdown: Path, table: str) -> None:
    """Replace the table in ``markdown``, from its header row to the first blank line."""
    lines = markdown.read_text().split("\n")
    start = lines.index(TABLE_HEADER)
    end = lines.index("", start)
    lines[start:end] = table.split("\n")
    markdown.write_text("\n".join(lines))
