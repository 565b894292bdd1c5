"""Read and validate a GGUF file's header without touching its tensor data.

Everything a model file says about itself (architecture, quantization, chat template…) comes from
here, and no file reaches llama.cpp before :func:`read_gguf_info` has accepted it. The reader is
bounded: every count and length is checked against sane limits *and* against the bytes the file
actually has before anything is allocated, big arrays (a 50k-token vocabulary) are skipped without
being kept, and tensor data is never read or mapped. The rules mirror llama.cpp's own loader
(``ggml/src/gguf.cpp``) so that a file refused here is one llama.cpp would refuse or choke on,
and the messages say what a user can do about it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from .bounded_reader import U32, U64, BoundedReader, Truncated
from .errors import InvalidModelFile, ModelNotFound

MAX_TENSORS = 100_000
MAX_KV = 100_000
MAX_STRING_BYTES = 16 * 1024 * 1024  # chat templates can be long; nothing legitimate is longer
MAX_KEY_BYTES = 64 * 1024
MAX_ARRAY_ITEMS = 1 << 24  # vocabularies reach ~260k tokens; 16M leaves room for growth
MAX_KEPT_STRING_BYTES = 64 * 1024  # longer values (except templates) are summarised, not kept
MAX_KEPT_TOTAL_BYTES = 32 * 1024 * 1024  # all kept strings together: memory stays bounded
MAX_NAME_BYTES = 64  # GGML_MAX_NAME: llama.cpp refuses tensor names this long
MAX_DIMS = 4  # GGML_MAX_DIMS
INT64_MAX = (1 << 63) - 1
DEFAULT_ALIGNMENT = 32

_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: U32,
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<B"),
    GGUFValueType.UINT64: U64,
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_TEMPLATE_KEY = "tokenizer.chat_template"

# Architectures llama.cpp only runs as encoders: they embed text, they do not chat.
EMBEDDING_ARCHITECTURES = frozenset({
    "bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2",
    "jina-bert-v3", "eurobert", "gemma-embedding", "t5encoder", "llama-embed",
})

# What other files start with, so a renamed one is named in the refusal.
_KNOWN_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"PK\x03\x04", "a ZIP archive (PyTorch .bin/.pt files are ZIP archives)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"lmgg", "an old GGML model (before GGUF)"),
    (b"fmgg", "an old GGMF model (before GGUF)"),
    (b"tjgg", "an old GGJT model (before GGUF)"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"<", "a text/HTML file (often an error page saved instead of the download)"),
    (b"{", "a JSON/text file"),
    (b"version https://git-lfs", "a Git LFS pointer, not the model itself"),
)


@dataclass(frozen=True)
class ValueSummary:
    """A metadata value that was skipped rather than kept (an array or an oversized string)."""

    type_name: str  # e.g. "array[STRING]", "string"
    length: int  # items for arrays, bytes for strings

    def __str__(self) -> str:
        return f"<{self.type_name} × {self.length}>"


MetadataValue = int | float | bool | str | ValueSummary


@dataclass(frozen=True)
class GGUFInfo:
    """What a validated GGUF file says about itself (no tensor data was read)."""

    path: Path
    file_size: int
    version: int
    tensor_count: int
    kv_count: int
    architecture: str | None
    name: str | None
    size_label: str | None
    parameter_count: int | None
    quantization: str | None
    context_length: int | None
    chat_template: str | None
    chat_template_sha256: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    is_embedding_model: bool
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict, compare=False, hash=False)
    # Tensor name → dimensions as stored (innermost first, llama.cpp's ``ne``): what an adapter's
    # shapes are checked against. A few hundred entries for a model; no data is read for them.
    tensor_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict, compare=False,
                                                        hash=False)


class _Parser:
    """One pass over the header; raises InvalidModelFile with a message naming the file."""

    def __init__(self, path: Path, reader: BoundedReader) -> None:
        self.path = path
        self.r = reader
        self.values: dict[str, MetadataValue] = {}
        self.types: dict[str, int] = {}
        self.template_bytes: bytes | None = None
        self.kept_bytes = 0

    def fail(self, what: str) -> InvalidModelFile:
        return InvalidModelFile(f"{self.path.name} {what}")

    def damaged(self, what: str) -> InvalidModelFile:
        return self.fail(f"{what}: the file is damaged or was not written by a GGUF exporter. "
                         "Choose another copy or re-export it with llama.cpp.")

    def check_count(self, count: int, limit: int, what: str, min_item_bytes: int) -> None:
        if count > limit:
            raise self.damaged(f"claims {count:,} {what} (the most Bastion accepts is {limit:,})")
        if count * min_item_bytes > self.r.remaining():
            raise self.fail(
                f"claims {count:,} {what} but is only {self.r.size:,} bytes long: the file is "
                "damaged or was cut short; copy it again."
            )

    def string(self, limit: int, what: str) -> bytes:
        n = self.r.u64()
        if n > limit:
            raise self.damaged(f"has a {what} of {n:,} bytes (the most Bastion accepts is {limit:,})")
        return self.r.take(n)

    def kv(self) -> None:
        key = self.string(MAX_KEY_BYTES, "metadata key").decode("utf-8", "replace")
        if not key:
            raise self.damaged("has an empty metadata key")
        if key in self.types:
            raise self.damaged(f"has the metadata key {key!r} twice")
        vtype = self.r.u32()
        self.types[key] = vtype
        if vtype == GGUFValueType.ARRAY:
            self.values[key] = self.array(key)
        elif vtype == GGUFValueType.STRING:
            self.values[key] = self.string_value(key)
        elif vtype in _SCALARS:
            value = self.r.unpack(_SCALARS[vtype])
            self.values[key] = bool(value) if vtype == GGUFValueType.BOOL else value
        else:
            raise self.damaged(f"has metadata {key!r} of unknown type {vtype}")

    def string_value(self, key: str) -> MetadataValue:
        n = self.r.u64()
        if n > MAX_STRING_BYTES:
            raise self.damaged(f"has a {n:,}-byte value for {key!r} "
                               f"(the most Bastion accepts is {MAX_STRING_BYTES:,})")
        keep = key == _TEMPLATE_KEY or (
            n <= MAX_KEPT_STRING_BYTES and self.kept_bytes + n <= MAX_KEPT_TOTAL_BYTES)
        if keep:
            self.kept_bytes += n
            raw = self.r.take(n)
            if key == _TEMPLATE_KEY:
                self.template_bytes = raw
            return raw.decode("utf-8", "replace")
        self.r.skip(n)
        return ValueSummary("string", n)

    def array(self, key: str) -> ValueSummary:
        item_type = self.r.u32()
        count = self.r.u64()
        if item_type == GGUFValueType.STRING:
            self.check_count(count, MAX_ARRAY_ITEMS, f"items in {key!r}", 8)
            too_long = self.r.skip_strings(count, MAX_STRING_BYTES)
            if too_long is not None:
                raise self.damaged(f"has a {too_long:,}-byte string in {key!r}")
        elif item_type in _SCALARS:
            size = _SCALARS[item_type].size
            self.check_count(count, MAX_ARRAY_ITEMS, f"items in {key!r}", size)
            self.r.skip(count * size)
        else:  # llama.cpp refuses nested arrays too
            raise self.damaged(f"has metadata {key!r} with items of unsupported type {item_type}")
        return ValueSummary(f"array[{GGUFValueType(item_type).name}]", count)

    def tensor(self, seen: set[str]) -> tuple[str, tuple[int, ...], int, int]:
        raw_name = self.string(MAX_KEY_BYTES, "tensor name")
        name = raw_name.decode("utf-8", "replace")
        if len(raw_name) >= MAX_NAME_BYTES:
            raise self.damaged(f"has a tensor name of {len(raw_name)} bytes (llama.cpp allows "
                               f"{MAX_NAME_BYTES - 1})")
        if name in seen:
            raise self.damaged(f"has the tensor {name!r} twice")
        seen.add(name)
        n_dims = self.r.u32()
        if n_dims > MAX_DIMS:
            raise self.damaged(f"has tensor {name!r} with {n_dims} dimensions (at most {MAX_DIMS})")
        dims = tuple(self.r.u64() for _ in range(n_dims))
        elements = 1
        for dim in dims:
            if dim == 0 or dim > INT64_MAX:
                raise self.damaged(f"has tensor {name!r} with an invalid shape {list(dims)}")
            elements *= dim
        if elements > INT64_MAX:
            raise self.damaged(f"has tensor {name!r} with an impossibly large shape {list(dims)}")
        ttype = self.r.u32()
        if ttype not in GGML_QUANT_SIZES:
            raise self.fail(
                f"has tensor {name!r} of unknown type {ttype}: it was made for a newer llama.cpp "
                "than Bastion ships, or it is damaged. Choose a model quantized with a common "
                "type (Q4_K_M, Q8_0, F16…)."
            )
        block = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)][0]
        if dims and dims[0] % block:
            raise self.damaged(f"has tensor {name!r} whose rows ({dims[0]}) do not fit "
                               f"{GGMLQuantizationType(ttype).name} blocks of {block}")
        offset = self.r.u64()
        return name, dims, ttype, offset

    def parse(self) -> GGUFInfo:
        r = self.r
        magic = r.take(min(4, r.size))
        if magic != b"GGUF":
            raise self.not_gguf(magic)
        version = r.u32()
        if version and version & 0xFFFF == 0:
            raise self.fail("is a big-endian GGUF file; llama.cpp on this computer needs a "
                            "little-endian one. Convert it with gguf_convert_endian.py.")
        if version not in (2, 3):
            raise self.fail(f"uses GGUF version {version}; Bastion reads versions 2 and 3. "
                            "Re-export it with a current llama.cpp.")
        n_tensors, n_kv = r.u64(), r.u64()
        self.check_count(n_tensors, MAX_TENSORS, "tensors", 8 + 4 + 4 + 8)
        self.check_count(n_kv, MAX_KV, "metadata entries", 8 + 1 + 4 + 1)
        for _ in range(n_kv):
            self.kv()
        alignment = self.values.get("general.alignment", DEFAULT_ALIGNMENT)
        if "general.alignment" in self.values and (
            self.types["general.alignment"] != GGUFValueType.UINT32
            or not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1)
        ):
            raise self.damaged(f"declares an invalid alignment ({alignment})")
        assert isinstance(alignment, int)
        if n_tensors == 0:
            raise self.fail("contains no tensors: it holds metadata only (for example a "
                            "vocabulary), not a model. Choose a complete model file.")
        seen: set[str] = set()
        tensors = [self.tensor(seen) for _ in range(n_tensors)]
        data_offset = -(-r.tell() // alignment) * alignment
        self.check_layout(tensors, alignment, data_offset)
        return self.info(version, n_tensors, n_kv, tensors, alignment, data_offset)

    def check_layout(self, tensors: list[tuple[str, tuple[int, ...], int, int]], alignment: int,
                     data_offset: int) -> None:
        # llama.cpp requires tensors stored in order, each padded to the alignment.
        expected = 0
        for name, dims, ttype, offset in tensors:
            if offset != expected:
                raise self.damaged(f"stores tensor {name!r} at offset {offset:,} where llama.cpp "
                                   f"expects {expected:,}")
            end = data_offset + offset + _nbytes(dims, ttype)
            if end > self.r.size:
                raise self.fail(
                    f"ends before its tensor data: the download or copy was cut short; copy it "
                    f"again. (Tensor {name!r} needs bytes up to {end:,}; the file has "
                    f"{self.r.size:,}.)"
                )
            expected += -(-_nbytes(dims, ttype) // alignment) * alignment

    def not_gguf(self, magic: bytes) -> InvalidModelFile:
        head = magic + self.r.take(min(20, self.r.remaining()))
        kind = next((label for prefix, label in _KNOWN_MAGICS if head.startswith(prefix)), None)
        if kind is None and len(head) >= 9 and head[8:9] == b"{":
            kind = "a safetensors file; convert it with llama.cpp's convert_hf_to_gguf.py"
        shown = kind or f"the bytes {magic!r}"
        return self.fail(f"is not a GGUF model file (it starts with {shown}). Choose a .gguf "
                         "file exported by llama.cpp or a converter.")

    def info(self, version: int, n_tensors: int, n_kv: int,
             tensors: list[tuple[str, tuple[int, ...], int, int]], alignment: int,
             data_offset: int) -> GGUFInfo:
        v = self.values
        arch = _text(v.get("general.architecture"))
        template = _text(v.get(_TEMPLATE_KEY))
        params = _int(v.get("general.parameter_count"))
        if params is None:
            params = sum(_elements(dims) for _, dims, _, _ in tensors)
        pooling = arch is not None and f"{arch}.pooling_type" in v
        return GGUFInfo(
            path=self.path,
            file_size=self.r.size,
            version=version,
            tensor_count=n_tensors,
            kv_count=n_kv,
            architecture=arch,
            name=_text(v.get("general.name")),
            size_label=_text(v.get("general.size_label")),
            parameter_count=params,
            quantization=_quantization(_int(v.get("general.file_type")), tensors),
            context_length=_int(v.get(f"{arch}.context_length")) if arch else None,
            chat_template=template,
            chat_template_sha256=(hashlib.sha256(self.template_bytes).hexdigest()
                                  if template is not None and self.template_bytes is not None
                                  else None),
            bos_token_id=_int(v.get("tokenizer.ggml.bos_token_id")),
            eos_token_id=_int(v.get("tokenizer.ggml.eos_token_id")),
            is_embedding_model=arch in EMBEDDING_ARCHITECTURES or (pooling and not template),
            alignment=alignment,
            data_offset=data_offset,
            metadata=dict(v),
            tensor_shapes={name: dims for name, dims, _, _ in tensors},
        )


def _elements(dims: tuple[int, ...]) -> int:
    total = 1
    for dim in dims:
        total *= dim
    return total


def _nbytes(dims: tuple[int, ...], ttype: int) -> int:
    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    return _elements(dims) // block * type_size


def _text(value: MetadataValue | None) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: MetadataValue | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _quantization(file_type: int | None, tensors: list[tuple[str, tuple[int, ...], int, int]]
                  ) -> str | None:
    if file_type is not None and file_type in LlamaFileType._value2member_map_:
        member = LlamaFileType(file_type)
        if member is not LlamaFileType.GUESSED:
            return "F32" if member is LlamaFileType.ALL_F32 else member.name.removeprefix("MOSTLY_")
    # No (usable) label: name the type holding most of the weights; 1-D norms are F32 anyway.
    weights: Counter[int] = Counter()
    for _, dims, ttype, _ in tensors:
        if len(dims) >= 2:
            weights[ttype] += _nbytes(dims, ttype)
    if not weights:
        for _, dims, ttype, _ in tensors:
            weights[ttype] += _nbytes(dims, ttype)
    if not weights:
        return None
    return GGMLQuantizationType(weights.most_common(1)[0][0]).name


def read_gguf_info(path: Path) -> GGUFInfo:
    """Validate a GGUF file and read its metadata, never reading tensor data.

    Args:
        path: the model file.

    Returns:
        The file's metadata and layout.

    Raises:
        ModelNotFound: there is no file at ``path``.
        InvalidModelFile: the file is not a GGUF llama.cpp can safely open (not GGUF, empty,
            cut short, absurd counts or lengths, unknown tensor types, data outside the file).
    """
    path = Path(path)
    try:
        # O_NONBLOCK so a FIFO planted under a .gguf name cannot hang us before the check below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ModelNotFound(f"There is no model file at {path}. Check the path and try again.") from None
    except IsADirectoryError:
        raise ModelNotFound(f"{path} is a folder, not a model file. Choose a .gguf file.") from None
    except OSError as error:
        raise InvalidModelFile(f"Bastion cannot read {path}: {error.strerror}. Check that the "
                               "file exists and that you may read it.") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelNotFound(f"{path} is a folder, not a model file. Choose a .gguf file.")
        raise InvalidModelFile(f"{path.name} is not a regular file (it is a device, pipe or "
                               "socket). Choose a .gguf model file.")
    with os.fdopen(fd, "rb", buffering=0) as file:
        if st.st_size == 0:
            raise InvalidModelFile(f"{path.name} is empty (0 bytes): the download or copy did "
                                   "not complete. Copy the model file again.")
        parser = _Parser(path, BoundedReader(file, st.st_size))
        try:
            return parser.parse()
        except Truncated:
            raise InvalidModelFile(
                f"{path.name} ends inside its header (it is {st.st_size:,} bytes long): the "
                "download or copy was cut short, or it is not a model file; copy it again."
            ) from None
        except OSError as error:
            raise InvalidModelFile(f"Bastion cannot read {path}: {error.strerror}. Check the "
                                   "disk and try again.") from None
