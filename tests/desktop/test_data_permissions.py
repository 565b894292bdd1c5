"""The data folder is private: the folder 0700, databases (with -wal/-shm) and models 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import sqlite_utils

from bastion.desktop.paths import data_paths
from bastion.models.model_import import import_model
from tests.models.gguf_factory import write_tiny_gguf


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_folder_is_created_private(bastion_home: Path) -> None:
    os.chmod(bastion_home, 0o755)  # an existing folder made too open is tightened again
    paths = data_paths()
    assert paths.home == bastion_home
    assert mode(paths.home) == 0o700
    assert mode(paths.models_dir) == 0o700


def test_databases_and_their_wal_files_are_private(bastion_home: Path) -> None:
    old = os.umask(0o022)  # as a fresh process would start
    try:
        paths = data_paths()
        db = sqlite_utils.Database(paths.library_db)
        db.enable_wal()
        db["notes"].insert({"id": 1, "text": "private"}, pk="id")
        # Keep the connection open: the -wal and -shm files exist only while it is.
        wal, shm = Path(f"{paths.library_db}-wal"), Path(f"{paths.library_db}-shm")
        assert wal.exists() and shm.exists()
        for file in (paths.library_db, wal, shm):
            assert mode(file) == 0o600, (file.name, oct(mode(file)))
        db.close()
    finally:
        os.umask(old)


def test_other_files_written_in_the_data_folder_are_private(bastion_home: Path) -> None:
    old = os.umask(0o022)
    try:
        paths = data_paths()
        paths.settings_file.write_text("{}", encoding="utf-8")
        (paths.models_dir / "copied.gguf").write_bytes(b"GGUF")
        assert mode(paths.settings_file) == 0o600
        assert mode(paths.models_dir / "copied.gguf") == 0o600
    finally:
        os.umask(old)


def test_imported_models_and_their_manifest_are_private(bastion_home: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        paths = data_paths()
        source = write_tiny_gguf(tmp_path / "downloads" / "tiny.Q8_0.gguf")
        os.chmod(source, 0o644)
        entry = import_model(source, paths.models_dir, embedded_sha256="0" * 64)
        assert entry.path.parent == paths.models_dir
        assert mode(entry.path) == 0o600
        assert mode(paths.models_dir / "manifest.json") == 0o600
        assert mode(paths.models_dir) == 0o700
    finally:
        os.umask(old)
