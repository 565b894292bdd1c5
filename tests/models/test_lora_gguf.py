"""Our GGUF LoRA writer: names, shapes, metadata, the llama q/k permutation, and — on the real
SmolLM2-135M — that llama.cpp with our adapter computes what transformers with PEFT computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from bastion.models.lora_gguf import (
    BASE_SHA256_KEY,
    LORA_TARGETS,
    AdapterWriteError,
    LoraBase,
    adapter_tensor_names,
    gguf_weight_name,
    parse_peft_key,
    permute_qk_rows,
    write_lora_gguf,
)

HIDDEN, FF, HEADS, KV_HEADS, HEAD_DIM, RANK = 32, 48, 4, 2, 8, 4
LLAMA = LoraBase("llama", n_head=HEADS, n_head_kv=KV_HEADS, name="Tiny", sha256="ab" * 32)
SHAPES = {  # (out, in) of each projection
    "q_proj": (HEADS * HEAD_DIM, HIDDEN), "k_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "v_proj": (KV_HEADS * HEAD_DIM, HIDDEN), "o_proj": (HIDDEN, HEADS * HEAD_DIM),
    "gate_proj": (FF, HIDDEN), "up_proj": (FF, HIDDEN), "down_proj": (HIDDEN, FF),
}


def peft_state(layers: int = 2, rank: int = RANK, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = {}
    for layer in range(layers):
        for module, (out, inp) in SHAPES.items():
            part = "self_attn" if module.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            key = f"base_model.model.model.layers.{layer}.{part}.{module}"
            state[f"{key}.lora_A.weight"] = rng.standard_normal((rank, inp)).astype(np.float32)
            state[f"{key}.lora_B.weight"] = rng.standard_normal((out, rank)).astype(np.float32)
    return state


def hf_reverse_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """What transformers' GGUF loader does to llama q/k rows (LlamaTensorProcessor)."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    return LlamaTensorProcessor()._reverse_permute_weights(w, n_head, n_head)


def test_names_follow_llama_cpp() -> None:
    assert gguf_weight_name(3, "q_proj") == "blk.3.attn_q.weight"
    assert gguf_weight_name(0, "down_proj") == "blk.0.ffn_down.weight"
    assert set(LORA_TARGETS.values()) == {"attn_q", "attn_k", "attn_v", "attn_output",
                                          "ffn_gate", "ffn_up", "ffn_down"}
    names = adapter_tensor_names(2, ["q_proj", "v_proj"])
    assert names == ["blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b",
                     "blk.0.attn_v.weight.lora_a", "blk.0.attn_v.weight.lora_b",
                     "blk.1.attn_q.weight.lora_a", "blk.1.attn_q.weight.lora_b",
                     "blk.1.attn_v.weight.lora_a", "blk.1.attn_v.weight.lora_b"]
    assert parse_peft_key("base_model.model.model.layers.12.mlp.up_proj.lora_B.weight") == (12, "up_proj", "B")
    assert parse_peft_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") == (0, "q_proj", "A")
    assert parse_peft_key("base_model.model.lm_head.weight") is None


@pytest.mark.parametrize("n_head", [1, 3, 9])
def test_permutation_is_the_inverse_of_what_transformers_undoes(n_head: int) -> None:
    rows = np.arange(n_head * 64 * 5, dtype=np.float32).reshape(n_head * 64, 5)
    permuted = permute_qk_rows(rows, n_head)
    assert not np.array_equal(permuted, rows)
    assert np.array_equal(hf_reverse_permute(permuted, n_head), rows)
    # Within a head, rotary partners (i, i + d/2) become neighbours (2i, 2i + 1).
    assert np.array_equal(permuted[1], rows[32]) and np.array_equal(permuted[2], rows[1])


def test_permutation_refuses_rows_that_are_not_whole_heads() -> None:
    with pytest.raises(AdapterWriteError, match="rotary heads"):
        permute_qk_rows(np.zeros((30, 2), dtype=np.float32), 4)


def test_writes_what_llama_cpp_reads(tmp_path: Path) -> None:
    state = peft_state()
    written = write_lora_gguf(tmp_path / "a.gguf", state, LLAMA, alpha=16.0, name="My adapter")
    assert (written.n_weights, written.rank, written.alpha) == (14, RANK, 16.0)
    assert written.size_bytes == (tmp_path / "a.gguf").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["a.gguf"]  # no temporary file left

    reader = GGUFReader(tmp_path / "a.gguf")
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama"
    assert reader.fields["adapter.lora.alpha"].types[0].name == "FLOAT32"
    assert fields["adapter.lora.alpha"] == 16.0
    assert fields["general.name"] == "My adapter"
    assert fields["general.base_model.0.name"] == "Tiny"
    assert fields[BASE_SHA256_KEY] == "ab" * 32

    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == sorted(adapter_tensor_names(2))
    for layer in range(2):
        for module, (out, inp) in SHAPES.items():
            prefix = f"base_model.model.model.layers.{layer}"
            key = next(k for k in state if k.startswith(prefix) and f".{module}.lora_A" in k)
            a = tensors[gguf_weight_name(layer, module) + ".lora_a"]
            b = tensors[gguf_weight_name(layer, module) + ".lora_b"]
            # GGUF lists dimensions innermost first: A is ne=[in, rank], B is ne=[rank, out],
            # which is what llama.cpp's shape check (model ne[0] == A ne[0], ne[1] == B ne[1]) wants.
            assert list(a.shape) == [inp, RANK] and list(b.shape) == [RANK, out]
            assert a.tensor_type.name == b.tensor_type.name == "F32"
            np.testing.assert_array_equal(a.data, state[key])  # A as it is
            b_peft = state[key.replace("lora_A", "lora_B")]
            expected = {"q_proj": permute_qk_rows(b_peft, HEADS),
                        "k_proj": permute_qk_rows(b_peft, KV_HEADS)}.get(module, b_peft)
            np.testing.assert_array_equal(b.data, expected)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_no_permutation_for_neox_rope_architectures(tmp_path: Path, arch: str) -> None:
    state = peft_state(layers=1)
    base = LoraBase(arch, n_head=HEADS, n_head_kv=KV_HEADS)
    write_lora_gguf(tmp_path / "a.gguf", state, base, alpha=8)
    b = {t.name: t for t in GGUFReader(tmp_path / "a.gguf").tensors}["blk.0.attn_q.weight.lora_b"]
    np.testing.assert_array_equal(b.data, state["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])


def test_f16_halves_the_tensors(tmp_path: Path) -> None:
    f32 = write_lora_gguf(tmp_path / "32.gguf", peft_state(), LLAMA, alpha=16)
    f16 = write_lora_gguf(tmp_path / "16.gguf", peft_state(), LLAMA, alpha=16, tensor_type="f16")
    assert f16.size_bytes < 0.6 * f32.size_bytes
    types = {t.tensor_type.name for t in GGUFReader(tmp_path / "16.gguf").tensors}
    assert types == {"F16"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop(next(k for k in s if "lora_B" in k)), "lacks lora_A or lora_B"),
        (lambda s: s.__setitem__("base_model.model.lm_head.weight", np.zeros((2, 2), np.float32)), "not a LoRA factor"),
        (lambda s: s.__setitem__(next(k for k in s if "lora_A" in k), np.full((RANK, HIDDEN), np.nan, np.float32)), "NaN"),
        (lambda s: s.__setitem__(next(k for k in s if "lora_A" in k), np.zeros((RANK + 1, HIDDEN), np.float32)), "do not form a LoRA pair"),
        (lambda s: s.clear(), "no LoRA weights"),
    ],
)
def test_refuses_inconsistent_adapters(tmp_path: Path, edit, message: str) -> None:
    state = peft_state(layers=1)
    edit(state)
    with pytest.raises(AdapterWriteError, match=message):
        write_lora_gguf(tmp_path / "a.gguf", state, LLAMA, alpha=16)
    assert list(tmp_path.iterdir()) == []


def test_refuses_mixed_ranks_and_unknown_architectures(tmp_path: Path) -> None:
    state = {**peft_state(layers=1, rank=4), **{k.replace("layers.0", "layers.1"): v
                                              for k, v in peft_state(layers=1, rank=8).items()}}
    with pytest.raises(AdapterWriteError, match="mixes LoRA ranks"):
        write_lora_gguf(tmp_path / "a.gguf", state, LLAMA, alpha=16)
    with pytest.raises(AdapterWriteError, match="'phi3' architecture"):
        write_lora_gguf(tmp_path / "a.gguf", peft_state(), LoraBase("phi3", 4, 4), alpha=16)


def test_a_failed_write_keeps_the_previous_adapter(tmp_path: Path) -> None:
    target = tmp_path / "a.gguf"
    write_lora_gguf(target, peft_state(seed=1), LLAMA, alpha=16)
    before = target.read_bytes()
    bad = peft_state(seed=2)
    bad[next(k for k in bad if "lora_B" in k)][0, 0] = np.inf
    with pytest.raises(AdapterWriteError):
        write_lora_gguf(target, bad, LLAMA, alpha=16)
    assert target.read_bytes() == before
    with pytest.raises(AdapterWriteError, match="could not be written"):
        write_lora_gguf(tmp_path / "missing" / "a.gguf", peft_state(), LLAMA, alpha=16)
