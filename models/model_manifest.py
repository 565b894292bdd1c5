"""The models folder's manifest: the SHA-256 each imported model had when it was imported.

``manifest.json`` maps file name → ``{"sha256", "size", "imported_at", "source"}`` (under a
``"files"`` key, next to a format ``"version"``). It is the reference ``verify`` compares against;
it is rewritten atomically under a folder lock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .file_hashes import folder_lock, read_json_object, write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ManifestRecord:
    """What was recorded when a model file was imported."""

    sha256: str
    size: int
    imported_at: str  # ISO 8601, UTC
    source: str  # the path it was imported from


def load_manifest(models_dir: Path) -> dict[str, ManifestRecord]:
    """File name → record; {} if there is no manifest. Malformed records are ignored."""
    files = read_json_object(models_dir / MANIFEST_NAME).get("files")
    records: dict[str, ManifestRecord] = {}
    if not isinstance(files, dict):
        return records
    for name, raw in files.items():
        try:
            records[str(name)] = ManifestRecord(
                sha256=str(raw["sha256"]), size=int(raw["size"]),
                imported_at=str(raw.get("imported_at", "")), source=str(raw.get("source", "")),
            )
        except (KeyError, TypeError, ValueError):
            continue
    return records


def record_in_manifest(models_dir: Path, name: str, record: ManifestRecord) -> None:
    """Add or replace the record for ``name``, atomically."""
    with folder_lock(models_dir):
        data = read_json_object(models_dir / MANIFEST_NAME)
        files = data.get("files")
        if not isinstance(files, dict):
            files = {}
        files[name] = asdict(record)
        write_json_atomic(models_dir / MANIFEST_NAME, {"version": MANIFEST_VERSION, "files": files})
