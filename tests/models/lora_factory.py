"""Random LoRA adapters for SmolLM2-135M, written with Bastion's own GGUF writer (test fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bastion.models.lora_gguf import LoraBase, write_lora_gguf

SMOLLM2 = LoraBase(architecture="llama", n_head=9, n_head_kv=3, name="SmolLM2 135M Instruct")
HIDDEN, KV, FFN, LAYERS = 576, 192, 1536, 30
# PEFT module → (out features, in features) in SmolLM2-135M.
SHAPES = {
    "q_proj": (HIDDEN, HIDDEN), "k_proj": (KV, HIDDEN), "v_proj": (KV, HIDDEN),
    "o_proj": (HIDDEN, HIDDEN), "gate_proj": (FFN, HIDDEN), "up_proj": (FFN, HIDDEN),
    "down_proj": (HIDDEN, FFN),
}
PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
          "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def random_adapter(
    path: Path,
    *,
    rank: int = 8,
    strength: float = 0.05,
    modules: tuple[str, ...] = ("q_proj", "v_proj"),
    layers: int = LAYERS,
    seed: int = 0,
    shapes: dict[str, tuple[int, int]] | None = None,
) -> Path:
    """A LoRA with random A and B on ``modules`` of every layer; ``strength`` sizes its effect."""
    rng = np.random.default_rng(seed)
    shapes = shapes or SHAPES
    state: dict[str, np.ndarray] = {}
    for layer in range(layers):
        for module in modules:
            out_features, in_features = shapes[module]
            key = f"base_model.model.model.layers.{layer}.{PARENT[module]}.{module}"
            state[f"{key}.lora_A.weight"] = rng.normal(0, 1 / np.sqrt(in_features), (rank, in_features)).astype(np.float32)
            state[f"{key}.lora_B.weight"] = rng.normal(0, strength, (out_features, rank)).astype(np.float32)
    write_lora_gguf(path, state, SMOLLM2, alpha=float(rank), name=path.stem)
    return path
