"""Jupyter notebooks (.ipynb): the cells' source, not the JSON around it or the outputs."""

from __future__ import annotations

import json
from typing import Any

from .registry import ParseInput, register
from .text import decode_input


@register("ipynb")
def parse_ipynb(source: ParseInput) -> None:
    """Markdown cells as written, code cells fenced with the notebook's language.

    Outputs are left out: they are often huge (images as base64, long logs) and say little that
    the code and prose do not. A notebook that is not valid JSON is indexed as plain text.
    """
    text = decode_input(source)
    try:
        notebook = json.loads(text)
    except ValueError:
        source.warnings.append("the notebook is not valid JSON; indexed as plain text")
        source.collector.add(text)
        return
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        source.warnings.append("the notebook has no cells list; indexed as plain text")
        source.collector.add(text)
        return
    language = _language(notebook)
    blocks: list[str] = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        body = _source(cell.get("source")).strip()
        if not body:
            continue
        kind = cell.get("cell_type")
        if kind == "code":
            blocks.append(f"```{language}\n{body}\n```")
        else:
            blocks.append(body)
    title = next((b[2:].strip() for b in blocks if b.startswith("# ")), None)
    source.title = title.splitlines()[0] if title else None
    source.collector.add("\n\n".join(blocks))


def _source(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return str(value) if value is not None else ""


def _language(notebook: dict[str, Any]) -> str:
    metadata = notebook.get("metadata")
    if isinstance(metadata, dict):
        info = metadata.get("language_info") or metadata.get("kernelspec") or {}
        if isinstance(info, dict):
            name = info.get("name") or info.get("language")
            if isinstance(name, str) and name.isidentifier():
                return name.lower()
    return ""
