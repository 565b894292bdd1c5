"""Write a PEFT LoRA adapter as a GGUF file that llama.cpp attaches to its base model.

What llama.cpp expects (``src/llama-adapter.cpp`` and ``convert_lora_to_gguf.py``): metadata
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` (f32) and the base's
``general.architecture`` (it refuses an adapter of another architecture); for each adapted weight
``W`` of the base, named as in the base GGUF (``blk.N.attn_q.weight``…), two tensors
``<name>.lora_a`` and ``<name>.lora_b``. They are PEFT's ``lora_A`` (rank × in) and ``lora_B``
(out × rank) with their shapes as they are: GGUF lists dimensions innermost first, so llama.cpp
reads A as ``ne = [in, rank]`` and B as ``ne = [rank, out]``, which is what its shape check wants.
llama.cpp scales ``B·A·x`` by ``scale · alpha / rank``, as PEFT does with ``alpha / rank``.

One trap: for the ``llama`` architecture, llama.cpp's converter permutes the rows of the q and k
projections (Hugging Face's rotary layout → llama.cpp's interleaved one), and transformers undoes
that when it loads a GGUF. An adapter trained on those Hugging Face weights must see its q and k
``lora_B`` rows permuted the same way (A acts on the input, which is not permuted), or llama.cpp
applies it to the wrong rotary dimensions and the adapter is silently wrong.

This module needs numpy and ``gguf`` only (no torch), so the adapter catalog can import
``LORA_TARGETS``, ``gguf_weight_name`` and ``adapter_tensor_names`` cheaply.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from .errors import ModelError
from .file_hashes import fsync_dir

# Hugging Face projection module → llama.cpp tensor (in ``blk.N.<tensor>.weight``).
LORA_TARGETS: dict[str, str] = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
# GGUF architectures whose q/k rows llama.cpp's converter permutes (rotary pairs interleaved).
PERMUTED_QK_ARCHITECTURES = frozenset({"llama"})
# Architectures whose adapters this writer knows how to name; others have fused projections
# (phi3's qkv_proj) or conversions (gemma's norms) that were not verified against llama.cpp.
WRITABLE_ARCHITECTURES = frozenset({"llama", "qwen2", "qwen3"})

LORA_A_SUFFIX = ".lora_a"
LORA_B_SUFFIX = ".lora_b"
BASE_SHA256_KEY = "bastion.base_model.sha256"

TensorType = Literal["f32", "f16"]
FloatArray = npt.NDArray[np.floating]

# "...model.layers.3.self_attn.q_proj.lora_A.weight" (optionally with PEFT's adapter name).
_PEFT_KEY = re.compile(
    r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(" + "|".join(LORA_TARGETS) + r")"
    r"\.lora_([AB])(?:\.[A-Za-z0-9_-]+)?\.weight$"
)


class AdapterWriteError(ModelError):
    """The adapter cannot be written (unsupported base, inconsistent tensors, full disk)."""


@dataclass(frozen=True)
class LoraBase:
    """What the writer needs to know about the base model.

    Attributes:
        architecture: the base GGUF's ``general.architecture`` ("llama", "qwen2", …).
        n_head: attention heads (permutes q for llama).
        n_head_kv: key/value heads (permutes k for llama; equals ``n_head`` without GQA).
        name: the base's ``general.name``, recorded as the adapter's base model.
        sha256: the base file's SHA-256, recorded so a catalog can tell which file it was made on.
    """

    architecture: str
    n_head: int
    n_head_kv: int
    name: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class WrittenAdapter:
    """The result of ``write_lora_gguf``."""

    path: Path
    n_weights: int  # adapted base weights (each has an A and a B tensor)
    rank: int
    alpha: float
    size_bytes: int


def gguf_weight_name(layer: int, module: str) -> str:
    """The base GGUF tensor a Hugging Face projection maps to, e.g. ``blk.3.attn_q.weight``.

    Raises:
        KeyError: ``module`` is not one of ``LORA_TARGETS``.
    """
    return f"blk.{layer}.{LORA_TARGETS[module]}.weight"


def adapter_tensor_names(n_layers: int, modules: Iterable[str] = LORA_TARGETS) -> list[str]:
    """Every tensor name an adapter on ``modules`` of all ``n_layers`` layers carries."""
    names: list[str] = []
    for layer in range(n_layers):
        for module in modules:
            weight = gguf_weight_name(layer, module)
            names += [weight + LORA_A_SUFFIX, weight + LORA_B_SUFFIX]
    return names


def parse_peft_key(key: str) -> tuple[int, str, Literal["A", "B"]] | None:
    """``(layer, module, "A"|"B")`` for a PEFT state-dict key, None if it is not a LoRA factor."""
    match = _PEFT_KEY.search(key)
    if match is None:
        return None
    factor: Literal["A", "B"] = "A" if match.group(3) == "A" else "B"
    return int(match.group(1)), match.group(2), factor


def permute_qk_rows(rows: FloatArray, n_head: int) -> FloatArray:
    """Reorder the output rows of a q or k projection the way llama.cpp's converter does.

    Hugging Face stores each head's rotary dimensions as two halves (x0…x_{d/2-1}, then their
    partners); llama.cpp's ``llama`` rope wants the partners adjacent. Rows are grouped per head
    as (2, d/2) and transposed to (d/2, 2). ``n_head`` is the number of heads these rows hold:
    the attention heads for q, the key/value heads for k.
    """
    out = rows.shape[0]
    if out % (2 * n_head):
        raise AdapterWriteError(
            f"A projection with {out} rows cannot be split into {n_head} rotary heads: the "
            "adapter does not match this base model."
        )
    half = out // n_head // 2
    return rows.reshape(n_head, 2, half, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _pairs(state: Mapping[str, FloatArray]) -> dict[tuple[int, str], dict[str, FloatArray]]:
    pairs: dict[tuple[int, str], dict[str, FloatArray]] = {}
    for key, value in state.items():
        parsed = parse_peft_key(key)
        if parsed is None:
            raise AdapterWriteError(
                f"The adapter holds {key!r}, which is not a LoRA factor of a projection "
                f"({', '.join(LORA_TARGETS)}); Bastion writes LoRA adapters on those only."
            )
        layer, module, factor = parsed
        slot = pairs.setdefault((layer, module), {})
        if factor in slot:
            raise AdapterWriteError(f"The adapter holds two lora_{factor} for layer {layer} {module}.")
        slot[factor] = np.asarray(value)
    return pairs


def _checked(layer: int, module: str, slot: dict[str, FloatArray]) -> tuple[FloatArray, FloatArray]:
    where = f"layer {layer} {module}"
    if "A" not in slot or "B" not in slot:
        raise AdapterWriteError(f"The adapter lacks lora_A or lora_B for {where}.")
    a, b = slot["A"], slot["B"]
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise AdapterWriteError(
            f"lora_A {a.shape} and lora_B {b.shape} of {where} do not form a LoRA pair "
            "(expected (rank, in) and (out, rank))."
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise AdapterWriteError(
            f"The adapter's {where} holds NaN or infinite values: training diverged. Train again "
            "with a lower learning rate."
        )
    return a, b


def write_lora_gguf(
    path: Path,
    state: Mapping[str, FloatArray],
    base: LoraBase,
    *,
    alpha: float,
    name: str | None = None,
    tensor_type: TensorType = "f32",
) -> WrittenAdapter:
    """Write PEFT LoRA factors as a llama.cpp GGUF adapter, atomically.

    Args:
        path: the ``.gguf`` file to create or replace; a crash leaves the old file or none.
        state: PEFT's state dict (``get_peft_model_state_dict``) as numpy arrays: keys like
            ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``.
        base: the base model's architecture and head counts (and, recorded, its name and hash).
        alpha: PEFT's ``lora_alpha``; llama.cpp scales by ``alpha / rank`` as PEFT does.
        name: the adapter's ``general.name``.
        tensor_type: "f32" (exact) or "f16" (half the size).

    Returns:
        What was written.

    Raises:
        AdapterWriteError: unsupported architecture, unpaired or misshapen factors, NaN weights,
            or the file could not be written (the message says why).
    """
    import gguf

    if base.architecture not in WRITABLE_ARCHITECTURES:
        raise AdapterWriteError(
            f"Bastion cannot write adapters for the {base.architecture!r} architecture; it "
            f"supports {', '.join(sorted(WRITABLE_ARCHITECTURES))}."
        )
    pairs = _pairs(state)
    if not pairs:
        raise AdapterWriteError("The adapter holds no LoRA weights.")
    dtype = np.float32 if tensor_type == "f32" else np.float16
    permute = base.architecture in PERMUTED_QK_ARCHITECTURES
    ranks: set[int] = set()
    tensors: list[tuple[str, FloatArray]] = []
    for (layer, module), slot in sorted(pairs.items()):
        a, b = _checked(layer, module, slot)
        ranks.add(a.shape[0])
        if permute and module == "q_proj":
            b = permute_qk_rows(b, base.n_head)
        elif permute and module == "k_proj":
            b = permute_qk_rows(b, base.n_head_kv)
        weight = gguf_weight_name(layer, module)
        tensors.append((weight + LORA_A_SUFFIX, np.ascontiguousarray(a, dtype=dtype)))
        tensors.append((weight + LORA_B_SUFFIX, np.ascontiguousarray(b, dtype=dtype)))
    if len(ranks) != 1:
        # llama.cpp takes the rank per weight, but alpha is one number: mixed ranks would scale
        # differently here than in PEFT.
        raise AdapterWriteError(f"The adapter mixes LoRA ranks {sorted(ranks)}; use one rank.")

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, base.architecture)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        writer.add_file_type(
            gguf.LlamaFileType.ALL_F32 if tensor_type == "f32" else gguf.LlamaFileType.MOSTLY_F16
        )
        if name:
            writer.add_name(name)
        if base.name:
            writer.add_base_model_count(1)
            writer.add_base_model_name(0, base.name)
        if base.sha256:
            writer.add_string(BASE_SHA256_KEY, base.sha256)
        for tensor_name, data in tensors:
            writer.add_tensor(tensor_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, 0o600)  # the user's data: private, like every file Bastion writes
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise AdapterWriteError(
            f"The adapter could not be written to {path} ({error.strerror or error}). Free some "
            "disk space or choose another folder, then write it again."
        ) from error
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)
    return WrittenAdapter(path=path, n_weights=len(tensors) // 2, rank=ranks.pop(),
                          alpha=float(alpha), size_bytes=path.stat().st_size)
