"""``bastion adapters list|import|info|verify|remove`` through the real command line entry point,
against the real embedded SmolLM2 as the base."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.desktop.paths import data_paths
from bastion.models.file_hashes import sha256_file
from tests.models import gguf_factory as factory
from tests.models.adapter_fixtures import random_lora, write_base_gguf

SMOLLM2_ID = "SmolLM2-135M-Instruct.Q4_1"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def facts(tmp_path: Path) -> Path:
    return random_lora(tmp_path / "downloads" / "facts.gguf")


def test_import_list_info_verify_remove(facts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "adapters", "list")
    assert code == 0 and out.startswith("No adapters yet.")

    code, out, err = run(capsys, "adapters", "import", str(facts))
    assert code == 0, err
    assert out.startswith(f"Imported the adapter facts, which fits {SMOLLM2_ID}, into "
                          f"{data_paths().adapters_dir}")
    assert f"sha256           {sha256_file(facts)}" in out
    assert "Importing facts.gguf: 100%" in err
    copy = data_paths().adapters_dir / "facts.gguf"
    assert copy.read_bytes() == facts.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600

    code, out, _ = run(capsys, "adapters", "list")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "ARCH", "RANK", "TARGETS", "BASE", "FILE", "VERIFIED"]
    size = f"{facts.stat().st_size / 1024:.1f}"
    assert row.split() == ["facts", "llama", "2", "attn_q,attn_v", SMOLLM2_ID, size, "KiB", "ok"]

    code, out, _ = run(capsys, "adapters", "list", "--json")
    (listed,) = [json.loads(line) for line in out.splitlines()]  # JSON lines
    assert (listed["id"], listed["rank"], listed["alpha"], listed["hidden_size"]) == (
        "facts", [2], 2.0, 576)
    assert listed["base"]["model"] == SMOLLM2_ID and listed["base"]["n_layer"] == 30
    assert listed["verified"] == "verified" and listed["sha256"] == sha256_file(facts)

    code, out, _ = run(capsys, "adapters", "info", "facts")
    assert code == 0
    assert "targets          attn_q, attn_v" in out
    assert "layers           30 (0–29)" in out
    assert f"fits             {SMOLLM2_ID} (hidden size 576, 30 layers; found by shapes)" in out
    assert "names as base    SmolLM2 135M Instruct" in out
    code, out, _ = run(capsys, "adapters", "info", "facts", "--json")
    assert json.loads(out)["targets"] == ["attn_q", "attn_v"]

    code, out, _ = run(capsys, "adapters", "verify")
    assert code == 0 and out.startswith("ok     facts: ok")

    code, out, _ = run(capsys, "adapters", "remove", "facts")
    assert code == 0 and out.startswith("Removed the adapter facts")
    assert not copy.exists()
    assert run(capsys, "adapters", "list", "--json")[1] == ""


def test_bad_input_gets_one_line_and_leaves_nothing(tmp_path: Path, facts: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        factory.write_png_named_gguf(tmp_path / "image.gguf"): "is not a GGUF model file",
        factory.write_tiny_gguf(tmp_path / "model.gguf"): "is a model, not a LoRA adapter",
        factory.copy_with_metadata(facts, tmp_path / "cv.gguf",
                                   set_str={"adapter.type": "control_vector"}):
            "Bastion attaches LoRA adapters only",
        random_lora(tmp_path / "wide.gguf", hidden=896, kv=128, heads=(14, 2), layers=2):
            f"wide.gguf does not fit {SMOLLM2_ID}: this adapter is for a model with hidden size "
            f"896; {SMOLLM2_ID} has 576",
        factory.write_huge_kv_count(tmp_path / "huge.gguf"): "metadata entries",
        factory.write_truncated_gguf(facts, tmp_path / "cut.gguf"): "cut short",
    }
    for path, message in cases.items():
        code, _, err = run(capsys, "adapters", "import", str(path))
        assert code == 1, path
        assert err.startswith("bastion: ") and message in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert run(capsys, "adapters", "list", "--json")[1] == ""


def test_import_for_a_named_base(tmp_path: Path, facts: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    write_base_gguf(data_paths().models_dir / "Tiny-Base.gguf")
    code, _, err = run(capsys, "adapters", "import", str(facts), "--base", "Tiny-Base")
    assert code == 1
    assert "facts.gguf does not fit Tiny-Base: this adapter is for a model with hidden size 576; " \
           "Tiny-Base has 64" in err
    code, out, err = run(capsys, "adapters", "import", str(facts), "--base", "default",
                         "--name", "facts-v2")
    assert code == 0, err
    assert out.startswith(f"Imported the adapter facts-v2, which fits {SMOLLM2_ID}")
    assert "found by chosen" in out


def test_verify_detects_a_changed_file(facts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "adapters", "import", str(facts))[0] == 0
    copy = data_paths().adapters_dir / "facts.gguf"
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0x01
    copy.write_bytes(bytes(data))
    code, out, err = run(capsys, "adapters", "verify")
    assert code == 1
    assert out.startswith("FAILED facts: MISMATCH - facts differs from the SHA-256 recorded")
    assert "1 of 1 adapters failed verification." in err


def test_remove_of_an_unknown_name(facts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "adapters", "remove", "nope")
    assert code == 1
    assert err.strip() == ("bastion: No adapter called 'nope'. Known adapters: none yet. Import "
                           "one with `bastion adapters import FILE`.")
    assert run(capsys, "adapters", "info", "nope")[0] == 1
