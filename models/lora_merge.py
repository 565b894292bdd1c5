"""Merge a GGUF LoRA adapter into its base model and quantize the result: a standalone
fine-tuned model, which is what the product runs.

The merge happens in GGUF space, so nothing has to be converted back from Hugging Face names:
each adapted weight is dequantized, ``W + scale · alpha / rank · B @ A`` is added (the adapter's
tensors are already in llama.cpp's layout, q/k permutation included), and the model is written
as F16 with every metadata key of the base. ``llama_model_quantize`` then makes the quantized
file, in a child process: a native abort costs that process only.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

# llama.cpp's llama_ftype values for the quantizations offered.
QUANTIZATIONS: dict[str, int] = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "F16": 1}
HEADER_FIELDS = ("GGUF.version", "GGUF.tensor_count", "GGUF.kv_count")
QUANTIZE_TIMEOUT_S = 1800.0


class MergeError(ModelError):
    """The adapter could not be merged or the result not quantized (the message says why)."""


@dataclass(frozen=True)
class MergedModel:
    path: Path
    quantization: str
    merged_weights: int  # base weights the adapter changed
    size_bytes: int


def _adapter_deltas(adapter: Path, scale: float) -> tuple[dict[str, np.ndarray], str]:
    """Base tensor name → the f32 update ``scale · alpha/rank · B @ A``; and the architecture."""
    from gguf import GGUFReader

    reader = GGUFReader(adapter)
    fields = {f.name: f.contents() for f in reader.fields.values()}
    if fields.get("general.type") != "adapter" or fields.get("adapter.type") != "lora":
        raise MergeError(f"{adapter.name} is not a LoRA adapter (general.type={fields.get('general.type')!r}).")
    alpha = float(fields.get("adapter.lora.alpha", 0.0))
    factors: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        base, _, part = tensor.name.rpartition(".lora_")
        factors.setdefault(base, {})[part] = _as_f32(tensor)
    deltas: dict[str, np.ndarray] = {}
    for name, pair in factors.items():
        if set(pair) != {"a", "b"}:
            raise MergeError(f"{adapter.name} has an unpaired factor for {name}.")
        a, b = pair["a"], pair["b"]  # (rank, in) and (out, rank)
        rank = a.shape[0]
        factor = scale * (alpha / rank if alpha else 1.0)
        deltas[name] = factor * (b @ a)
    return deltas, str(fields.get("general.architecture", ""))


def _as_f32(tensor: Any) -> np.ndarray:
    """A GGUF tensor as float32, shaped (rows, columns) as llama.cpp lays it out."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    kind = GGMLQuantizationType(tensor.tensor_type)
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    if kind in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        return np.asarray(tensor.data, dtype=np.float32).reshape(shape)
    return np.asarray(dequantize(tensor.data, kind), dtype=np.float32).reshape(shape)


def write_merged_f16(base: Path, adapter: Path, out: Path, scale: float = 1.0) -> int:
    """Write base + adapter as an F16 GGUF at ``out``; the number of weights changed."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

    deltas, adapter_arch = _adapter_deltas(adapter, scale)
    reader = GGUFReader(base)
    arch = str(reader.fields["general.architecture"].contents())
    if adapter_arch and adapter_arch != arch:
        raise MergeError(f"{adapter.name} is for the {adapter_arch} architecture; {base.name} is {arch}.")
    writer = GGUFWriter(out, arch)
    for field in reader.fields.values():
        if field.name in HEADER_FIELDS or field.name == "general.architecture":
            continue
        value = field.contents()
        if field.name == "general.file_type":
            value = 1  # mostly F16
        main = GGUFValueType(field.types[0])
        sub = GGUFValueType(field.types[1]) if main == GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(field.name, value, main, sub_type=sub)
    changed = 0
    for tensor in reader.tensors:
        weights = _as_f32(tensor)
        delta = deltas.pop(tensor.name, None)
        if delta is not None:
            if delta.shape != weights.shape:
                raise MergeError(
                    f"{adapter.name} changes {tensor.name} with shape {delta.shape}, but {base.name} "
                    f"has {weights.shape}: the adapter is for another base model."
                )
            weights = weights + delta
            changed += 1
        keep_f32 = weights.ndim == 1  # norms and biases stay exact, as llama.cpp's converter does
        data = weights if keep_f32 else weights.astype(np.float16)
        writer.add_tensor(tensor.name, data, raw_dtype=GGMLQuantizationType.F32 if keep_f32 else GGMLQuantizationType.F16)
    if deltas:
        raise MergeError(f"{adapter.name} adapts tensors {base.name} lacks: {', '.join(sorted(deltas)[:3])}…")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return changed


def _quantize_child(source: str, target: str, ftype: int, conn: Any) -> None:
    # llama.cpp prints a line per tensor; the parent reports the outcome in words.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = max(1, len(os.sched_getaffinity(0)))
        rc = llama_cpp.llama_model_quantize(source.encode(), target.encode(), params)
        conn.send(int(rc))
    except Exception as error:  # reported to the parent as text
        conn.send(str(error))


def quantize(source: Path, target: Path, quantization: str) -> None:
    """``llama_model_quantize`` in a spawned child (a native abort costs that process only)."""
    if quantization not in QUANTIZATIONS:
        raise MergeError(f"Unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}.")
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_quantize_child, name="bastion-quantize",
                          args=(str(source), str(target), QUANTIZATIONS[quantization], child), daemon=True)
    process.start()
    child.close()
    result: Any = None
    if parent.poll(QUANTIZE_TIMEOUT_S):
        with contextlib.suppress(EOFError):
            result = parent.recv()
    process.join(5.0)
    if process.is_alive():
        process.kill()
    if result != 0:
        why = f"it returned {result}" if result is not None else f"it stopped (exit code {process.exitcode})"
        raise MergeError(f"llama.cpp could not quantize the merged model to {quantization}: {why}. "
                         "Check the free disk space and try again.")


def merge_adapter(base: Path, adapter: Path, out: Path, *, scale: float = 1.0,
                  quantization: str = "Q8_0") -> MergedModel:
    """Merge ``adapter`` into ``base`` and write the quantized model to ``out`` (atomically).

    Args:
        base: the base model GGUF the adapter was trained on.
        adapter: a GGUF LoRA adapter for it.
        out: the model file to create; a failure leaves no partial file behind.
        scale: the adapter's strength in the merged model (1 = as trained).
        quantization: one of ``QUANTIZATIONS`` ("F16" keeps the merged weights unquantized).

    Raises:
        MergeError: the adapter does not fit the base, or writing or quantizing failed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".merge-") as scratch:
        merged = Path(scratch) / "merged-f16.gguf"
        try:
            changed = write_merged_f16(base, adapter, merged, scale)
        except OSError as error:
            raise MergeError(f"Could not write the merged model: {error}. Free some disk space.") from error
        final = merged
        if quantization != "F16":
            final = Path(scratch) / "merged-quantized.gguf"
            quantize(merged, final, quantization)
        os.replace(final, out)
    return MergedModel(out, quantization, changed, out.stat().st_size)
