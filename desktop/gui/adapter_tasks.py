"""Adapter jobs for the window's files thread (whose context is the model ``Catalog``).

Like ``core_tasks``: each takes ``(catalog, job)`` first, runs off the GUI thread, imports no Qt
and returns plain records. The adapters folder is passed in by the view, so every job of a
session works on the folder the window started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.desktop.gui.core_tasks import JobLike, Throttle
from bastion.models.adapter_catalog import AdapterCatalog, AdapterEntry
from bastion.models.catalog import VerifyResult


def adapter_entries(catalog: Any, job: JobLike, adapters_dir: Path, hash_files: bool = False
                    ) -> list[AdapterEntry]:
    """Every adapter with its metadata; ``hash_files`` computes missing SHA-256 values."""
    return AdapterCatalog(adapters_dir).entries(
        hash_files=hash_files, progress=Throttle(job) if hash_files else None)


def import_adapter_file(catalog: Any, job: JobLike, adapters_dir: Path, source: Path,
                        base: str | None = None) -> AdapterEntry:
    """Check ``source`` against the models in ``catalog`` and copy it in, reporting
    ``ByteProgress``."""
    from bastion.models.adapter_import import import_adapter

    return import_adapter(source, adapters_dir, catalog, Throttle(job), base=base)


def verify_adapter(catalog: Any, job: JobLike, adapters_dir: Path, name: str) -> VerifyResult:
    return AdapterCatalog(adapters_dir).verify(name, Throttle(job))


def remove_adapter(catalog: Any, job: JobLike, adapters_dir: Path, name: str) -> AdapterEntry:
    return AdapterCatalog(adapters_dir).remove(name)
