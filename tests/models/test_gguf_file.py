"""The GGUF header reader: real metadata, and every malformed model file refused in words."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from bastion.models.errors import InvalidModelFile, ModelNotFound
from bastion.models.gguf_file import (
    MAX_STRING_BYTES,
    MAX_TENSORS,
    ValueSummary,
    read_gguf_info,
)

from . import gguf_factory as factory


def test_tiny_gguf_metadata(tmp_path: Path) -> None:
    path = factory.write_tiny_gguf(tmp_path / "tiny.gguf", kv={"general.size_label": "48"})
    info = read_gguf_info(path)
    assert info.path == path
    assert info.file_size == path.stat().st_size
    assert info.version == 3
    assert info.tensor_count == 2
    assert info.architecture == "llama"
    assert info.name == "Tiny Test Model"
    assert info.size_label == "48"
    assert info.parameter_count == 5 * 8 + 8  # summed from tensor shapes
    assert info.quantization == "F32"  # general.file_type 0 = ALL_F32
    assert info.context_length == 256
    assert info.chat_template == factory.DEFAULT_TEMPLATE
    assert info.chat_template_sha256 == hashlib.sha256(factory.DEFAULT_TEMPLATE.encode()).hexdigest()
    assert (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert info.is_embedding_model is False
    assert info.data_offset % info.alignment == 0
    # Big arrays are summarised, never kept.
    assert info.metadata["tokenizer.ggml.tokens"] == ValueSummary("array[STRING]", 5)


def test_parameter_count_prefers_metadata(tmp_path: Path) -> None:
    path = factory.write_tiny_gguf(tmp_path / "p.gguf", kv={"general.parameter_count": 2**40})
    assert read_gguf_info(path).parameter_count == 2**40


def test_quantization_from_dominant_tensor_type_without_file_type(tmp_path: Path) -> None:
    tensors = {
        "token_embd.weight": np.zeros((4, 32), dtype=np.float16),
        "output_norm.weight": np.ones(32, dtype=np.float32),
    }
    path = factory.write_tiny_gguf(tmp_path / "f16.gguf", file_type=None, tensors=tensors)
    assert read_gguf_info(path).quantization == "F16"


def test_custom_alignment_is_respected(tmp_path: Path) -> None:
    path = factory.write_tiny_gguf(tmp_path / "a.gguf", alignment=64)
    info = read_gguf_info(path)
    assert info.alignment == 64
    assert info.data_offset % 64 == 0


def test_unknown_architecture_reads_fine(tmp_path: Path) -> None:
    info = read_gguf_info(factory.write_unknown_arch_gguf(tmp_path / "m.gguf"))
    assert info.architecture == "frobnicator-9000"
    assert info.context_length == 256
    assert info.is_embedding_model is False


def test_embedding_model_is_flagged(tmp_path: Path) -> None:
    info = read_gguf_info(factory.write_embedding_gguf(tmp_path / "e.gguf"))
    assert info.architecture == "bert"
    assert info.chat_template is None and info.chat_template_sha256 is None
    assert info.is_embedding_model is True


def test_pooling_type_without_template_is_an_embedder(tmp_path: Path) -> None:
    path = factory.write_tiny_gguf(tmp_path / "q.gguf", arch="qwen3", chat_template=None,
                                   kv={"qwen3.pooling_type": 3})
    assert read_gguf_info(path).is_embedding_model is True


def test_no_template_is_reported_as_none(tmp_path: Path) -> None:
    info = read_gguf_info(factory.write_tiny_gguf(tmp_path / "n.gguf", chat_template=None))
    assert info.chat_template is None and info.chat_template_sha256 is None
    assert info.is_embedding_model is False


# -- refusals --------------------------------------------------------------------------------


def refusal(path: Path) -> str:
    with pytest.raises(InvalidModelFile) as caught:
        read_gguf_info(path)
    return str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no model file"):
        read_gguf_info(tmp_path / "absent.gguf")


def test_folder_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(ModelNotFound, match="is a folder"):
        read_gguf_info(tmp_path / "dir.gguf")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    assert "not a regular file" in refusal(fifo)


def test_zero_byte(tmp_path: Path) -> None:
    message = refusal(factory.write_zero_byte(tmp_path / "empty.gguf"))
    assert "empty.gguf is empty (0 bytes)" in message
    assert "Copy the model file again" in message


def test_renamed_png(tmp_path: Path) -> None:
    message = refusal(factory.write_png_named_gguf(tmp_path / "cat.gguf"))
    assert "cat.gguf is not a GGUF model file (it starts with a PNG image)" in message
    assert "Choose a .gguf file exported by llama.cpp or a converter." in message


def test_renamed_zip(tmp_path: Path) -> None:
    assert "ZIP archive" in refusal(factory.write_zip_named_gguf(tmp_path / "model.gguf"))


def test_unrecognised_bytes_are_shown(tmp_path: Path) -> None:
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"\x00\x01\x02\x03" + bytes(100))
    assert "it starts with the bytes b'\\x00\\x01\\x02\\x03'" in refusal(path)


def test_tiny_non_gguf_shorter_than_magic(tmp_path: Path) -> None:
    path = tmp_path / "ab.gguf"
    path.write_bytes(b"ab")
    assert "is not a GGUF model file" in refusal(path)


def test_truncated_tensor_data(tmp_path: Path) -> None:
    good = factory.write_tiny_gguf(tmp_path / "good.gguf")
    message = refusal(factory.write_truncated_gguf(good, tmp_path / "cut.gguf"))
    assert "cut.gguf ends before its tensor data" in message
    assert "cut short; copy it again" in message


def test_truncated_inside_header(tmp_path: Path) -> None:
    good = factory.write_tiny_gguf(tmp_path / "good.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:100])
    message = refusal(cut)
    assert "cut short" in message and "copy it again" in message


def test_cut_anywhere_is_refused(tmp_path: Path) -> None:
    """Whatever byte a copy stops at, the file is refused with a message (never a crash)."""
    data = factory.write_tiny_gguf(tmp_path / "good.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    for size in range(1, len(data), 7):
        cut.write_bytes(data[:size])
        assert refusal(cut).startswith("cut.gguf ")


def test_huge_tensor_count(tmp_path: Path) -> None:
    message = refusal(factory.write_huge_tensor_count(tmp_path / "t.gguf"))
    assert f"claims 1,099,511,627,776 tensors (the most Bastion accepts is {MAX_TENSORS:,})" in message


def test_tensor_count_larger_than_the_file(tmp_path: Path) -> None:
    message = refusal(factory.write_huge_tensor_count(tmp_path / "t.gguf", count=50_000))
    assert "claims 50,000 tensors but is only 256 bytes long" in message


def test_huge_kv_count(tmp_path: Path) -> None:
    assert "metadata entries" in refusal(factory.write_huge_kv_count(tmp_path / "k.gguf"))


def test_huge_string_length(tmp_path: Path) -> None:
    message = refusal(factory.write_huge_string(tmp_path / "s.gguf"))
    assert "'general.name'" in message
    assert f"{MAX_STRING_BYTES:,}" in message


def test_huge_array_length(tmp_path: Path) -> None:
    assert "items in 'tokenizer.ggml.token_type'" in refusal(factory.write_huge_array(tmp_path / "a.gguf"))


def test_unsupported_versions(tmp_path: Path) -> None:
    assert "GGUF version 1" in refusal(factory.write_raw_header(tmp_path / "v1.gguf", version=1))
    assert "GGUF version 4" in refusal(factory.write_raw_header(tmp_path / "v4.gguf", version=4))
    big = factory.write_raw_header(tmp_path / "be.gguf", version=3 << 24)
    assert "big-endian" in refusal(big)


def test_unknown_tensor_type(tmp_path: Path) -> None:
    message = refusal(factory.write_tensor_gguf(tmp_path / "u.gguf", ggml_type=99))
    assert "tensor 'token_embd.weight' of unknown type 99" in message


def test_hand_written_tensor_is_accepted(tmp_path: Path) -> None:
    info = read_gguf_info(factory.write_tensor_gguf(tmp_path / "ok.gguf"))
    assert info.parameter_count == 32 and info.quantization == "F32"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"data_bytes": 10}, "ends before its tensor data"),
        ({"offset": 2**63}, "where llama.cpp expects 0"),
        ({"offset": 32, "data_bytes": 4096}, "where llama.cpp expects 0"),
        ({"dims": (8, 0)}, "invalid shape [8, 0]"),
        ({"dims": (2**62, 2**62)}, "impossibly large shape"),
        ({"dims": (1, 1, 1, 1, 1)}, "5 dimensions"),
        ({"dims": (8, 4), "ggml_type": 2}, "do not fit Q4_0 blocks of 32"),  # 8 % 32 != 0
        ({"name": "x" * 64}, "tensor name of 64 bytes"),
    ],
)
def test_bad_tensor_infos(tmp_path: Path, kwargs: dict[str, object], expected: str) -> None:
    assert expected in refusal(factory.write_tensor_gguf(tmp_path / "b.gguf", **kwargs))  # type: ignore[arg-type]


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    entry = struct.pack("<Q", 12) + b"general.name" + struct.pack("<IQ", 8, 1) + b"x"
    path = factory.write_raw_header(tmp_path / "d.gguf", n_kv=2, body=entry * 2)
    assert "'general.name' twice" in refusal(path)


def test_nested_array_is_refused(tmp_path: Path) -> None:
    body = struct.pack("<Q", 3) + b"key" + struct.pack("<IIQ", 9, 9, 1)
    assert "unsupported type 9" in refusal(factory.write_raw_header(tmp_path / "n.gguf", n_kv=1, body=body))


def test_unknown_value_type_is_refused(tmp_path: Path) -> None:
    body = struct.pack("<Q", 3) + b"key" + struct.pack("<I", 77)
    assert "unknown type 77" in refusal(factory.write_raw_header(tmp_path / "v.gguf", n_kv=1, body=body))


def test_bad_alignment_is_refused(tmp_path: Path) -> None:
    body = struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 48)
    path = factory.write_raw_header(tmp_path / "al.gguf", n_kv=1, body=body)
    assert "invalid alignment (48)" in refusal(path)


def test_no_tensors_is_not_a_model(tmp_path: Path) -> None:
    assert "contains no tensors" in refusal(factory.write_raw_header(tmp_path / "v.gguf", n_tensors=0))


# -- the real embedded model ------------------------------------------------------------------


def test_real_smollm2_metadata(smollm2_path: Path) -> None:
    info = read_gguf_info(smollm2_path)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.context_length == 8192
    assert info.size_label == "135M"
    assert info.tensor_count == 272
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.chat_template_sha256 == hashlib.sha256(info.chat_template.encode()).hexdigest()
    assert info.is_embedding_model is False
    assert info.metadata["tokenizer.ggml.tokens"] == ValueSummary("array[STRING]", 49152)


def test_copy_with_metadata_changes_only_what_was_asked(smollm2_path: Path, tmp_path: Path) -> None:
    copy = factory.copy_with_metadata(
        smollm2_path, tmp_path / "edited.gguf",
        set_str={"tokenizer.chat_template": "{{ messages }}", "general.name": "Edited"},
        drop={"general.license"},
    )
    original, edited = read_gguf_info(smollm2_path), read_gguf_info(copy)
    assert edited.chat_template == "{{ messages }}"
    assert edited.name == "Edited"
    assert "general.license" not in edited.metadata
    assert edited.tensor_count == original.tensor_count
    assert edited.quantization == "Q4_1"
    # The tensor data section is byte-for-byte the original's.
    data_size = original.file_size - original.data_offset
    assert edited.file_size - edited.data_offset == data_size
    with open(smollm2_path, "rb") as a, open(copy, "rb") as b:
        a.seek(original.data_offset)
        b.seek(edited.data_offset)
        assert hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()


def test_copy_with_metadata_can_drop_the_template(smollm2_path: Path, tmp_path: Path) -> None:
    copy = factory.copy_with_metadata(smollm2_path, tmp_path / "bare.gguf",
                                      drop={"tokenizer.chat_template"})
    assert read_gguf_info(copy).chat_template is None


def test_long_strings_are_summarised_but_templates_kept(tmp_path: Path) -> None:
    template = "{# long #}" + "x" * 200_000
    path = factory.write_tiny_gguf(tmp_path / "long.gguf", chat_template=template,
                                   kv={"general.description": "d" * 100_000})
    info = read_gguf_info(path)
    assert info.metadata["general.description"] == ValueSummary("string", 100_000)
    assert info.chat_template == template
