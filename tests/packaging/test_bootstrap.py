"""bootstrap.py keeps its llama.cpp wheel in a cache keyed by the build flags, so a changed flag
is never served a wheel built with the old ones (pip's own cache does not key on CMAKE_ARGS)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap_under_test", ROOT / "packaging" / "bootstrap.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("BASTION_WHEEL_CACHE", str(tmp_path / "wheels"))
    return module


def fake_built_wheel(module: ModuleType) -> Path:
    folder = module.wheel_cache_root() / module.llama_build_key()
    folder.mkdir(parents=True)
    wheel = folder / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"wheel")
    (folder / module.BUILD_INFO).write_text(json.dumps(module.llama_build_info()))
    return wheel


def test_the_build_is_portable_by_its_flags(bootstrap: ModuleType) -> None:
    flags = bootstrap.LLAMA_CMAKE_ARGS
    assert "-DGGML_NATIVE=OFF" in flags  # never -march=native: the bundle runs on other CPUs
    assert "-DGGML_BACKEND_DL=ON" in flags and "-DGGML_CPU_ALL_VARIANTS=ON" in flags


def test_a_changed_flag_is_not_served_the_old_wheel(bootstrap: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_built_wheel(bootstrap)
    assert bootstrap.cached_llama_wheel() == wheel
    monkeypatch.setattr(bootstrap, "LLAMA_CMAKE_ARGS", (*bootstrap.LLAMA_CMAKE_ARGS, "-DGGML_AVX512=ON"))
    assert bootstrap.cached_llama_wheel() is None


def test_a_half_built_folder_is_not_reused(bootstrap: ModuleType) -> None:
    wheel = fake_built_wheel(bootstrap)
    (wheel.parent / bootstrap.BUILD_INFO).unlink()
    assert bootstrap.cached_llama_wheel() is None


def test_a_venv_with_another_build_gets_the_portable_wheel(
    bootstrap: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = fake_built_wheel(bootstrap)
    installs: list[tuple[str, ...]] = []
    monkeypatch.setattr(bootstrap, "pip", lambda python, *args: installs.append(args))
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".bastion-llama-build").write_text("a-key-of-other-flags")
    bootstrap.install_llama(Path("python"), venv)
    assert installs == [("--no-deps", "--force-reinstall", str(wheel))]
    bootstrap.install_llama(Path("python"), venv)  # the second run installs nothing
    assert len(installs) == 1
