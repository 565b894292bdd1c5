"""Random-weight llama-family GGUF models of a chosen shape, for speed benchmarks only.

    .venv/bin/python bench/synthetic_llama.py smollm2-1.7b OUT.gguf [--quantization Q4_1]

Only the embedded SmolLM2-135M ships, and nothing can be downloaded here, so what a cost per
token looks like on a bigger model of the same family is measured on a model of that model's
shape: the embedded model's metadata and tokenizer, with the block count, widths and head counts
of the shape, random weights (normal, σ 0.02; norms 1), written F16 and quantized by llama.cpp's
``llama_model_quantize`` like any imported model. Its answers are noise; its arithmetic per token
is the real model's.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bastion.desktop  # noqa: F401 - offline environment
from bastion.models.catalog import embedded_default_model_path
from bastion.models.lora_merge import quantize


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(out, in) of each projection LoRA adapts, by PEFT module name."""
        kv = self.n_head_kv * self.head_dim
        e, f = self.n_embd, self.n_ff
        return {"q_proj": (e, e), "k_proj": (kv, e), "v_proj": (kv, e), "o_proj": (e, e),
                "gate_proj": (f, e), "up_proj": (f, e), "down_proj": (e, f)}


# Published configurations of the SmolLM2 family (config.json of each model).
SHAPES = {
    "smollm2-135m": Shape(n_layer=30, n_embd=576, n_ff=1536, n_head=9, n_head_kv=3),
    "smollm2-360m": Shape(n_layer=32, n_embd=960, n_ff=2560, n_head=15, n_head_kv=5),
    "smollm2-1.7b": Shape(n_layer=24, n_embd=2048, n_ff=8192, n_head=32, n_head_kv=32),
}

_SHAPE_KEYS = {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
               "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count"}
_HEADER = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture"}


def write_f16(shape: Shape, out: Path, seed: int = 0) -> None:
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(embedded_default_model_path())
    writer = GGUFWriter(out, "llama")
    for field in reader.fields.values():
        if field.name in _HEADER or field.name in _SHAPE_KEYS:
            continue
        value = 1 if field.name == "general.file_type" else field.contents()
        main = GGUFValueType(field.types[0])
        sub = GGUFValueType(field.types[1]) if main == GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(field.name, value, main, sub_type=sub)
    writer.add_block_count(shape.n_layer)
    writer.add_embedding_length(shape.n_embd)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.head_dim)

    rng = np.random.default_rng(seed)
    vocab = int(reader.fields["llama.vocab_size"].contents())

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def add(name: str, data: np.ndarray) -> None:
        kind = GGMLQuantizationType.F32 if data.dtype == np.float32 else GGMLQuantizationType.F16
        writer.add_tensor(name, data, raw_dtype=kind)

    ones = np.ones(shape.n_embd, dtype=np.float32)
    add("token_embd.weight", matrix(vocab, shape.n_embd))
    add("output_norm.weight", ones)
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for layer in range(shape.n_layer):
        add(f"blk.{layer}.attn_norm.weight", ones)
        add(f"blk.{layer}.ffn_norm.weight", ones)
        for module, (rows, cols) in shape.module_shapes().items():
            add(f"blk.{layer}.{names[module]}.weight", matrix(rows, cols))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def synthetic_model(name: str, out: Path, quantization: str = "Q4_1") -> Path:
    """A quantized random-weight model of ``SHAPES[name]`` at ``out`` (kept if already there)."""
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        f16 = Path(scratch) / "f16.gguf"
        write_f16(SHAPES[name], f16)
        part = Path(scratch) / "quantized.gguf"
        quantize(f16, part, quantization)
        part.replace(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--quantization", default="Q4_1")
    args = parser.parse_args()
    path = synthetic_model(args.shape, args.out, args.quantization)
    print(f"{path} ({path.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
