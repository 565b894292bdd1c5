"""The one place that decides where Bastion keeps its data.

``BASTION_HOME`` overrides the per-user folder (tests set it). The folder is private to the user:
created 0700, and files Bastion writes there are 0600.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class DataPaths:
    home: Path

    @property
    def chats_db(self) -> Path:
        return self.home / "bastion.db"

    @property
    def library_db(self) -> Path:
        return self.home / "library.db"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def settings_file(self) -> Path:
        return self.home / "settings.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def data_home() -> Path:
    override = os.environ.get("BASTION_HOME")
    if override:
        return Path(override).expanduser().resolve()
    return Path(platformdirs.user_data_dir("bastion", appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def data_paths(create: bool = True) -> DataPaths:
    paths = DataPaths(data_home())
    if create:
        ensure_private_dir(paths.home)
        ensure_private_dir(paths.models_dir)
    # Files Bastion creates (databases, -wal, -shm, imported models) are private to the user.
    os.umask(0o077)
    return paths
