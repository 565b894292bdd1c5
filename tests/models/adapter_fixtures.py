"""LoRA adapter fixtures written with Bastion's own writer, and tiny base models they fit.

``random_lora`` defaults to SmolLM2-135M's shapes (30 layers, hidden 576, 9 heads / 3 KV heads of
64, FFN 1536) with rank 2, so an adapter is a few hundred kilobytes and fits the embedded model.
``write_base_gguf`` writes a tiny llama-style base (zeros) whose shapes an adapter can match,
for tests that need a base in the models folder without copying SmolLM2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bastion.models.lora_gguf import LoraBase, write_lora_gguf
from tests.models.gguf_factory import write_tiny_gguf

SMOLLM2 = {"hidden": 576, "kv": 192, "ffn": 1536, "layers": 30, "heads": (9, 3)}
TINY = {"hidden": 64, "kv": 32, "ffn": 128, "layers": 2, "heads": (4, 2)}
_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
           "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def _shapes(hidden: int, kv: int, ffn: int) -> dict[str, tuple[int, int]]:
    """PEFT module → (out features, in features)."""
    return {"q_proj": (hidden, hidden), "k_proj": (kv, hidden), "v_proj": (kv, hidden),
            "o_proj": (hidden, hidden), "gate_proj": (ffn, hidden), "up_proj": (ffn, hidden),
            "down_proj": (hidden, ffn)}


def random_lora(
    path: Path,
    *,
    hidden: int = 576,
    kv: int = 192,
    ffn: int = 1536,
    layers: int = 30,
    heads: tuple[int, int] = (9, 3),
    arch: str = "llama",
    modules: tuple[str, ...] = ("q_proj", "v_proj"),
    rank: int = 2,
    seed: int = 0,
    base_name: str | None = "SmolLM2 135M Instruct",
    base_sha256: str | None = None,
) -> Path:
    """A LoRA with small random A and B on ``modules`` of every layer, written atomically."""
    rng = np.random.default_rng(seed)
    shapes = _shapes(hidden, kv, ffn)
    state: dict[str, np.ndarray] = {}
    for layer in range(layers):
        for module in modules:
            out_features, in_features = shapes[module]
            key = f"base_model.model.model.layers.{layer}.{_PARENT[module]}.{module}"
            state[f"{key}.lora_A.weight"] = rng.normal(0, 0.1, (rank, in_features)).astype(np.float32)
            state[f"{key}.lora_B.weight"] = rng.normal(0, 0.1, (out_features, rank)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = LoraBase(arch, heads[0], heads[1], name=base_name, sha256=base_sha256)
    write_lora_gguf(path, state, base, alpha=float(rank), name=path.stem)
    return path


def tiny_lora(path: Path, **kwargs: object) -> Path:
    """A LoRA for the base ``write_base_gguf`` writes (unless ``kwargs`` change the shapes)."""
    options: dict[str, object] = {**TINY, "base_name": "Tiny Base", **kwargs}
    return random_lora(path, **options)  # type: ignore[arg-type]


def write_base_gguf(
    path: Path,
    *,
    hidden: int = 64,
    kv: int = 32,
    ffn: int = 128,
    layers: int = 2,
    heads: tuple[int, int] = (4, 2),
    arch: str = "llama",
    name: str = "Tiny Base",
) -> Path:
    """A small valid llama-style model (all weights zero) with the seven projections per layer."""
    tensors: dict[str, np.ndarray] = {"token_embd.weight": np.zeros((8, hidden), np.float32)}
    targets = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
               "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for layer in range(layers):
        for module, (out_features, in_features) in _shapes(hidden, kv, ffn).items():
            # numpy (out, in) is stored as ne = [in, out], as converters store weights.
            tensors[f"blk.{layer}.{targets[module]}.weight"] = np.zeros(
                (out_features, in_features), np.float32)
        tensors[f"blk.{layer}.attn_norm.weight"] = np.ones(hidden, np.float32)
    tensors["output_norm.weight"] = np.ones(hidden, np.float32)
    return write_tiny_gguf(
        path, arch=arch, name=name, tensors=tensors,
        tokens=("<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"),
        kv={f"{arch}.embedding_length": hidden, f"{arch}.block_count": layers,
            f"{arch}.feed_forward_length": ffn, f"{arch}.attention.head_count": heads[0],
            f"{arch}.attention.head_count_kv": heads[1]})
