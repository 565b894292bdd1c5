"""What each route costs besides time per answer, gathered for a lab run's ``RunInfo.costs``.

The index: its documents, passages, the bytes its passages and vectors take, and its build time
(the library keeps no record of how long syncs took, so that is "not recorded"; ``bastion lab
freshness`` measures a build of a copy). Each adapter: its file and, from the training record
written beside it (``NAME.training.json``), how long training took. The engine: its resident
memory once the model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from bastion.desktop.errors import BastionError
from bastion.models.adapter_catalog import AdapterEntry
from bastion.store.library_status import collection_bytes

TRAINING_SUFFIX = ".training.json"


def collection_costs(library: Any, name: str) -> dict[str, Any]:
    """The index of collection ``name``: documents, passages, bytes; refuses an empty one.

    Raises:
        BastionError: the collection has no indexed passages.
        StoreError: there is no such collection.
    """
    [status] = library.status(name)
    indexed = status.counts.get("indexed", 0)
    if status.chunks == 0 or indexed == 0:
        raise BastionError(
            f"The collection {name!r} has no indexed passages ({indexed} documents indexed), so "
            "its arms would only measure an empty index. Run `bastion library sync "
            f"{name}` (and see `bastion library status {name}`), then start the lab again.")
    library_db = Path(library.db_path)
    return {"name": name, "documents": indexed, "chunks": status.chunks,
            "index_bytes": collection_bytes(library.db, library.collection(name).id),
            "library_bytes": library_db.stat().st_size if library_db.exists() else 0,
            # The library records when each document was indexed, not how long a sync took.
            "index_build_s": None}


def training_record(adapter_file: Path) -> dict[str, Any] | None:
    """The training record beside an adapter (``NAME.training.json``), or None when there is
    none or it cannot be read (an adapter imported from elsewhere has none)."""
    path = adapter_file.with_name(adapter_file.stem + TRAINING_SUFFIX)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def training_seconds(adapter_file: Path) -> float | None:
    """How long the adapter took to train (``wall_s`` of its record), if recorded."""
    record = training_record(adapter_file) or {}
    wall = record.get("wall_s")
    return float(wall) if isinstance(wall, int | float) and not isinstance(wall, bool) else None


def adapter_costs(entry: AdapterEntry) -> dict[str, Any]:
    """An adapter's file size, hash and training time (None: no training record)."""
    return {"bytes": entry.file_size, "sha256": entry.sha256 or entry.expected_sha256,
            "training_s": training_seconds(entry.path)}


def engine_rss_mb(engine: Any) -> float | None:
    """Resident memory of the engine process (model, context and adapters), if it has one."""
    pid = getattr(engine, "pid", None)
    if not isinstance(pid, int):
        return None
    try:
        return round(float(psutil.Process(pid).memory_info().rss) / 2**20, 1)
    except psutil.Error:  # gone or not ours to read: the figure is optional
        return None
