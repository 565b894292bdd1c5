"""Generate GGUF fixtures for tests: tiny valid models, hostile and broken files, edited copies.

Valid files are written with ``gguf.GGUFWriter`` (the same writer llama.cpp's converters use);
hostile headers are written by hand with ``struct`` so they can say things no writer would.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from gguf import GGUFValueType, GGUFWriter

from bastion.models.gguf_file import read_gguf_info

DEFAULT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

MetaValue = str | int | float | bool | Sequence[str] | Sequence[int]


def write_tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    name: str | None = "Tiny Test Model",
    chat_template: str | None = DEFAULT_TEMPLATE,
    context_length: int | None = 256,
    file_type: int | None = 0,
    kv: Mapping[str, MetaValue] | None = None,
    tokens: Sequence[str] | None = ("<unk>", "<s>", "</s>", "a", "b"),
    tensors: Mapping[str, np.ndarray] | None = None,
    alignment: int | None = None,
) -> Path:
    """Write a small, valid GGUF (two F32 tensors by default) and return its path.

    ``kv`` values are written with their natural GGUF type (int → INT32 unless it needs 64 bits,
    float → FLOAT32, str → STRING, lists → arrays).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(path, arch)
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    if name is not None:
        writer.add_name(name)
    if context_length is not None:
        writer.add_uint32(f"{arch}.context_length", context_length)
    if file_type is not None:
        writer.add_file_type(file_type)
    if tokens:
        writer.add_token_list(list(tokens))
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for key, value in (kv or {}).items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            if -(2**31) <= value < 2**31:
                writer.add_int32(key, value)
            else:
                writer.add_uint64(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, list(value))
    if tensors is None:
        tensors = {
            "token_embd.weight": np.arange(5 * 8, dtype=np.float32).reshape(5, 8),
            "output_norm.weight": np.ones(8, dtype=np.float32),
        }
    for tensor_name, array in tensors.items():
        writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_embedding_gguf(path: Path) -> Path:
    """An embedding-model-like GGUF: architecture ``bert`` with a pooling type, no template."""
    return write_tiny_gguf(path, arch="bert", name="Tiny Embedder", chat_template=None,
                           kv={"bert.pooling_type": 1, "bert.embedding_length": 8})


def write_unknown_arch_gguf(path: Path) -> Path:
    """A valid GGUF whose architecture no llama.cpp knows."""
    return write_tiny_gguf(path, arch="frobnicator-9000", name="Mystery")


def write_zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def write_png_named_gguf(path: Path) -> Path:
    """A PNG image renamed to ``.gguf``."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200))
    return path


def write_zip_named_gguf(path: Path) -> Path:
    """A ZIP archive (what PyTorch ``.bin`` files are) renamed to ``.gguf``."""
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    return path


def write_truncated_gguf(src: Path, dst: Path, cut: int = 16) -> Path:
    """Copy ``src`` without its last ``cut`` bytes: a download or copy cut short."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) - cut])
    return dst


def _gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def write_raw_header(
    path: Path,
    *,
    version: int = 3,
    n_tensors: int = 1,
    n_kv: int = 0,
    body: bytes = b"",
    magic: bytes = b"GGUF",
    pad_to: int = 256,
) -> Path:
    """A hand-written header (magic, version, counts) followed by ``body`` and zero padding."""
    data = magic + struct.pack("<IQQ", version, n_tensors, n_kv) + body
    path.write_bytes(data + bytes(max(0, pad_to - len(data))))
    return path


def write_huge_tensor_count(path: Path, count: int = 2**40) -> Path:
    return write_raw_header(path, n_tensors=count, n_kv=0)


def write_huge_kv_count(path: Path, count: int = 2**40) -> Path:
    return write_raw_header(path, n_tensors=1, n_kv=count)


def write_huge_string(path: Path, length: int = 2**62) -> Path:
    """One metadata key whose string value claims ``length`` bytes."""
    body = _gguf_string("general.name") + struct.pack("<IQ", int(GGUFValueType.STRING), length)
    return write_raw_header(path, n_tensors=1, n_kv=1, body=body)


def write_huge_array(path: Path, length: int = 2**40) -> Path:
    """One metadata array claiming ``length`` INT32 items."""
    body = _gguf_string("tokenizer.ggml.token_type") + struct.pack(
        "<IIQ", int(GGUFValueType.ARRAY), int(GGUFValueType.INT32), length)
    return write_raw_header(path, n_tensors=1, n_kv=1, body=body)


def write_tensor_gguf(
    path: Path,
    *,
    dims: Sequence[int] = (8, 4),
    ggml_type: int = 0,
    offset: int = 0,
    data_bytes: int | None = None,
    name: str = "token_embd.weight",
) -> Path:
    """One tensor described by hand (type, dims, offset), followed by ``data_bytes`` of data.

    With ``data_bytes`` None the data is exactly what an F32 tensor of ``dims`` needs.
    """
    body = _gguf_string("general.architecture") + struct.pack("<I", int(GGUFValueType.STRING))
    body += _gguf_string("llama")
    body += _gguf_string(name) + struct.pack("<I", len(dims))
    body += b"".join(struct.pack("<Q", d) for d in dims)
    body += struct.pack("<IQ", ggml_type, offset)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + body
    header += bytes(-len(header) % 32)
    if data_bytes is None:
        data_bytes = 4 * int(np.prod(dims)) if dims else 4
    path.write_bytes(header + bytes(data_bytes))
    return path


_SCALAR_SIZES = {
    GGUFValueType.UINT8: 1, GGUFValueType.INT8: 1, GGUFValueType.UINT16: 2, GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4, GGUFValueType.INT32: 4, GGUFValueType.FLOAT32: 4,
    GGUFValueType.BOOL: 1, GGUFValueType.UINT64: 8, GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}


def _kv_spans(header: bytes, n_kv: int) -> tuple[list[tuple[str, int, int]], int]:
    """Byte spans of each metadata entry in ``header`` (which starts after the 24-byte prefix)."""
    spans: list[tuple[str, int, int]] = []
    pos = 0

    def string_end(at: int) -> int:
        return at + 8 + struct.unpack_from("<Q", header, at)[0]

    for _ in range(n_kv):
        start = pos
        key_end = string_end(pos)
        key = header[pos + 8 : key_end].decode()
        (vtype,) = struct.unpack_from("<I", header, key_end)
        pos = key_end + 4
        if vtype == GGUFValueType.ARRAY:
            item_type, count = struct.unpack_from("<IQ", header, pos)
            pos += 12
            if item_type == GGUFValueType.STRING:
                for _ in range(count):
                    pos = string_end(pos)
            else:
                pos += count * _SCALAR_SIZES[GGUFValueType(item_type)]
        elif vtype == GGUFValueType.STRING:
            pos = string_end(pos)
        else:
            pos += _SCALAR_SIZES[GGUFValueType(vtype)]
        spans.append((key, start, pos))
    return spans, pos


def copy_with_metadata(
    src: Path,
    dst: Path,
    set_str: Mapping[str, str] | None = None,
    drop: set[str] | None = None,
) -> Path:
    """Copy a GGUF file, changing string metadata, keeping every tensor byte for byte.

    The metadata entries are re-spliced as raw bytes and the tensor infos and data section are
    copied verbatim (tensor offsets are relative to the data section, so they stay valid). That
    takes well under a second for the 98 MB SmolLM2, where a GGUFReader/GGUFWriter round trip
    takes several.

    Args:
        src: a valid little-endian GGUF (for example the real SmolLM2).
        dst: where to write the copy.
        set_str: string values to set (existing keys keep their position; new keys are appended),
            e.g. ``{"tokenizer.chat_template": "..."}``.
        drop: keys to leave out, e.g. ``{"tokenizer.chat_template"}``.

    Returns:
        ``dst``.
    """
    set_str = dict(set_str or {})
    drop = set(drop or ())
    info = read_gguf_info(src)  # validates src and gives the data section's offset
    with open(src, "rb") as source:
        header = source.read(info.data_offset)
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", header, 0)
        assert magic == b"GGUF", src
        spans, kv_end = _kv_spans(header[24:], n_kv)
        body = header[24:]
        entries: list[bytes] = []
        for key, start, end in spans:
            if key in drop:
                continue
            if key in set_str:
                entries.append(_string_kv(key, set_str.pop(key)))
            else:
                entries.append(body[start:end])
        entries.extend(_string_kv(key, value) for key, value in set_str.items())
        tensor_infos = body[kv_end:]
        # Tensor infos end where padding to the alignment begins; re-pad after the new metadata.
        ti_end = _tensor_infos_end(tensor_infos, n_tensors)
        out = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(entries))
        out += b"".join(entries) + tensor_infos[:ti_end]
        out += bytes(-len(out) % info.alignment)
        with open(dst, "wb") as target:
            target.write(out)
            source.seek(info.data_offset)
            shutil.copyfileobj(source, target, 1 << 22)
    return dst


def _string_kv(key: str, value: str) -> bytes:
    return _gguf_string(key) + struct.pack("<I", int(GGUFValueType.STRING)) + _gguf_string(value)


def _tensor_infos_end(data: bytes, n_tensors: int) -> int:
    pos = 0
    for _ in range(n_tensors):
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * n_dims + 4 + 8
    return pos
