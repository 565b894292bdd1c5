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
    def adapters_dir(self) -> Path:
        """Imported LoRA adapters and their manifest (not listed as models: a subfolder)."""
        return self.models_dir / "adapters"

    @property
    def settings_file(self) -> Path:
        return self.home / "settings.json"

    @property
    def engine_fallbacks_file(self) -> Path:
        """Safer engine settings the self-test found, per model file, llama.cpp build and CPU."""
        return self.home / "engine-fallbacks.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def lab_dir(self) -> Path:
        """The window's lab runs, one folder each (``bastion lab run --out`` may put one anywhere)."""
        return self.home / "lab"


def location_file() -> Path:
    """Where a data folder chosen in Settings is remembered (outside the data folder itself)."""
    return Path(platformdirs.user_config_dir("bastion", appauthor=False)) / "data-folder.txt"


def data_home() -> Path:
    """``BASTION_HOME``, else the folder chosen in Settings, else the per-user default."""
    override = os.environ.get("BASTION_HOME")
    if override:
        return Path(override).expanduser().resolve()
    try:
        chosen = location_file().read_text(encoding="utf-8").strip()
    except OSError:
        chosen = ""
    if chosen:
        return Path(chosen).expanduser().resolve()
    return Path(platformdirs.user_data_dir("bastion", appauthor=False))


def choose_data_home(folder: Path | None) -> None:
    """Remember ``folder`` as the data folder from the next start (None: back to the default).

    Nothing is moved: the old folder keeps its chats, index and models.
    """
    target = location_file()
    if folder is None:
        target.unlink(missing_ok=True)
        return
    ensure_private_dir(target.parent)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(str(Path(folder).expanduser().resolve()) + "\n", encoding="utf-8")
    os.replace(tmp, target)


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
