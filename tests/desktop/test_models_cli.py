"""``bastion models list|info|verify|import`` through the real command line entry point."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.desktop.paths import data_paths
from bastion.models.file_hashes import sha256_file
from tests.models import gguf_factory as factory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return factory.write_tiny_gguf(tmp_path / "downloads" / "tiny-chat.gguf", name="Tiny Chat",
                                   kv={"general.size_label": "48"})


def test_list_shows_the_embedded_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == 0
    header, default = out.splitlines()[:2]
    assert header.split() == ["ID", "ARCH", "SIZE", "QUANT", "CONTEXT", "TEMPLATE", "FILE",
                              "VERIFIED"]
    assert default.split()[:7] == ["SmolLM2-135M-Instruct.Q4_1", "*", "llama", "135M", "Q4_1",
                                   "8192", "yes"]
    assert str(data_paths().models_dir) in out


def test_import_then_list_info_verify(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "models", "import", str(tiny))
    assert code == 0, err
    assert "Imported tiny-chat" in out
    assert f"sha256           {sha256_file(tiny)}" in out
    assert "Importing tiny-chat.gguf: 100%" in err
    copy = data_paths().models_dir / "tiny-chat.gguf"
    assert copy.read_bytes() == tiny.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600

    code, out, _ = run(capsys, "models", "list")
    row = next(line for line in out.splitlines() if line.startswith("tiny-chat"))
    assert row.split() == ["tiny-chat", "llama", "48", "F32", "256", "yes",
                           str(tiny.stat().st_size), "B", "ok"]

    code, out, _ = run(capsys, "models", "info", "tiny-chat")
    assert code == 0
    # One name per file: the id, as in the list; the GGUF's own title is a detail.
    assert "name             tiny-chat" in out
    assert "general.name     Tiny Chat" in out
    assert f"sha256           {sha256_file(tiny)}" in out
    assert "recorded sha256  " + sha256_file(tiny) in out
    assert "general.size_label = 48" in out
    assert "tokenizer.ggml.tokens = <array[STRING] × 5>" in out

    code, out, _ = run(capsys, "models", "info", "tiny-chat", "--template")
    assert factory.DEFAULT_TEMPLATE in out

    code, out, _ = run(capsys, "models", "verify", "tiny-chat")
    assert code == 0
    assert out.startswith("ok     tiny-chat: ok")


def test_verify_all_fails_on_a_changed_file(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "models", "import", str(tiny))[0] == 0
    code, out, _ = run(capsys, "models", "verify")
    assert code == 0
    assert "SmolLM2-135M-Instruct.Q4_1: ok" in out and "tiny-chat: ok" in out

    copy = data_paths().models_dir / "tiny-chat.gguf"
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0x01  # inside tensor data: still a valid GGUF, no longer the imported bytes
    copy.write_bytes(bytes(data))
    code, out, err = run(capsys, "models", "verify")
    assert code == 1
    assert "FAILED tiny-chat: MISMATCH" in out
    assert "1 of 2 model files failed verification." in err


def test_verify_fails_on_an_invalid_file(capsys: pytest.CaptureFixture[str]) -> None:
    models_dir = data_paths().models_dir
    factory.write_png_named_gguf(models_dir / "photo.gguf")
    code, out, _ = run(capsys, "models", "verify", "photo")
    assert code == 1
    assert "FAILED photo: INVALID" in out and "is not a GGUF model file" in out

    code, out, err = run(capsys, "models", "list")
    assert code == 0
    assert "photo" in out and "INVALID" in out
    assert "photo: photo.gguf is not a GGUF model file" in err

    code, _, err = run(capsys, "models", "info", "photo")
    assert code == 1 and "is not a GGUF model file" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (factory.write_zero_byte, "is empty (0 bytes)"),
        (factory.write_png_named_gguf, "is not a GGUF model file (it starts with a PNG image)"),
        (factory.write_huge_tensor_count, "claims 1,099,511,627,776 tensors"),
    ],
)
def test_import_refuses_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  make: object, message: str) -> None:
    bad = make(tmp_path / "bad.gguf")  # type: ignore[operator]
    code, _, err = run(capsys, "models", "import", str(bad))
    assert code == 1
    assert err.startswith("bastion: ") and message in err
    assert "Traceback" not in err
    assert not list(data_paths().models_dir.glob("*.gguf"))


def test_import_refuses_truncated_and_duplicate(tmp_path: Path, tiny: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cut = factory.write_truncated_gguf(tiny, tmp_path / "cut.gguf")
    code, _, err = run(capsys, "models", "import", str(cut))
    assert code == 1 and "ends before its tensor data" in err

    assert run(capsys, "models", "import", str(tiny))[0] == 0
    code, _, err = run(capsys, "models", "import", str(tiny))
    assert code == 1 and "already in the models folder" in err


def test_import_with_wrong_sha256(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "models", "import", str(tiny), "--sha256", "0" * 64)
    assert code == 1 and "does not match the expected SHA-256" in err


def test_missing_things(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "models", "info", "nonesuch")
    assert code == 1 and "No model called 'nonesuch'" in err
    code, _, err = run(capsys, "models", "import", str(tmp_path / "absent.gguf"))
    assert code == 1 and "There is no model file at" in err
