"""Our GGUF LoRA writer: names, shapes, metadata, the llama q/k permutation, and — on the real
SmolLM2-135M — that llama.cpp with our adapter computes what transformers with PEFT computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from bastion.models import lora_gguf
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
from tests.models.llama_lora import LlamaCppLora

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
    assert (tmp_path / "a.gguf").stat().st_mode & 0o777 == 0o600

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


# -- llama.cpp agrees with transformers + PEFT on the real SmolLM2-135M ---------------------------

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are Bastion, a helpful assistant."},
     {"role": "user", "content": "Give me a short tip for learning to cook."}],
    [{"role": "user", "content": "Count from one to five, then name three colours of the rainbow."}],
]
# Random B large enough that each adapter moves about half of the argmaxes: its effect then
# stands well above the difference Q4_1 makes between the two engines.
RANDOM_B_STD = {"all": 0.15, "qk": 0.4}


@pytest.fixture(scope="module")
def transformers_lora(smollm2_path: Path, finetune_base_cache: Path):
    """SmolLM2 in transformers with two PEFT adapters of random A and B: "all" on the seven
    projections, "qk" on q_proj and k_proj only (where the permutation matters)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from bastion.models.file_hashes import sha256_file
    from bastion.models.finetune_model import load_dequantized

    torch.set_num_threads(2)
    model, tokenizer = load_dequantized(smollm2_path, base_sha256=sha256_file(smollm2_path),
                                        cache_dir=finetune_base_cache)
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(LORA_TARGETS)),
                          adapter_name="all")
    peft.add_adapter("qk", LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj"]))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            for adapter, std in RANDOM_B_STD.items():
                if f".lora_B.{adapter}." in name:
                    param.normal_(0.0, std)
    peft.eval()
    return peft, tokenizer


def prompt_ids(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def hf_logits(peft, ids: list[int], adapter: str | None) -> np.ndarray:
    import torch

    with torch.no_grad():
        if adapter is None:
            with peft.disable_adapter():
                out = peft(input_ids=torch.tensor([ids])).logits
        else:
            peft.set_adapter(adapter)
            out = peft(input_ids=torch.tensor([ids])).logits
    return out[0].float().numpy()


@pytest.fixture(scope="module")
def llama_cpp_lora(smollm2_path: Path):
    runner = LlamaCppLora(smollm2_path)
    yield runner
    runner.close()


def write_f32_copy(src: Path, dst: Path) -> Path:
    """SmolLM2 with its Q4_1 weights dequantized to F32 in a GGUF: the very weights transformers
    computes with, so llama.cpp and transformers should agree to rounding."""
    from gguf import GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize

    reader = GGUFReader(src)
    writer = GGUFWriter(dst, str(reader.fields["general.architecture"].contents()))
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type":
            writer.add_file_type(LlamaFileType.ALL_F32)
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), kind, sub_type=sub)
    for tensor in reader.tensors:
        data = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        writer.add_tensor(tensor.name, data.reshape([int(d) for d in reversed(tensor.shape)]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


@pytest.fixture(scope="module")
def llama_cpp_f32(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    runner = LlamaCppLora(write_f32_copy(smollm2_path, tmp_path_factory.mktemp("f32") / "smollm2-f32.gguf"))
    yield runner
    runner.close()


def write_peft(peft, adapter: str, path: Path, base: LoraBase) -> Path:
    from peft import get_peft_model_state_dict

    state = {k: v.detach().float().numpy() for k, v in get_peft_model_state_dict(peft, adapter_name=adapter, save_embedding_layers=False).items()}
    write_lora_gguf(path, state, base, alpha=16, name=f"random {adapter}")
    return path


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(share of positions with the same argmax, max |Δlogit|)."""
    return float((a.argmax(-1) == b.argmax(-1)).mean()), float(np.abs(a - b).max())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.slow
def test_llama_cpp_with_our_adapter_computes_what_peft_computes(
        transformers_lora, llama_cpp_lora: LlamaCppLora, llama_cpp_f32: LlamaCppLora,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    peft, tokenizer = transformers_lora
    config = peft.get_base_model().config
    base = LoraBase("llama", config.num_attention_heads, config.num_key_value_heads, name="SmolLM2")
    paths = {k: write_peft(peft, k, tmp_path / f"{k}.gguf", base) for k in ("all", "qk")}
    # The bug this guards against: the same adapter written without the q/k permutation.
    monkeypatch.setattr(lora_gguf, "PERMUTED_QK_ARCHITECTURES", frozenset())
    paths["qk_unpermuted"] = write_peft(peft, "qk", tmp_path / "qk-unpermuted.gguf", base)
    engines = {"q4": llama_cpp_lora, "f32": llama_cpp_f32}
    loaded = {(e, k): engine.load(p) for e, engine in engines.items() for k, p in paths.items()}

    rows: dict[str, list[np.ndarray]] = {}
    for messages in PROMPTS:
        ids = prompt_ids(tokenizer, messages)
        got = {"hf_base": hf_logits(peft, ids, None), "hf_all": hf_logits(peft, ids, "all"),
               "hf_qk": hf_logits(peft, ids, "qk")}
        for e, engine in engines.items():
            got[f"{e}_base"] = engine.logits(ids)
            got[f"{e}_zero"] = engine.logits(ids, loaded[(e, "all")], scale=0.0)
            for k in paths:
                got[f"{e}_{k}"] = engine.logits(ids, loaded[(e, k)])
        for key, value in got.items():
            rows.setdefault(key, []).append(value)
    r = {k: np.concatenate(v) for k, v in rows.items()}

    moved = {k: 1 - agreement(r["hf_base"], r[f"hf_{k}"])[0] for k in ("all", "qk")}
    print(f"\n{len(r['hf_base'])} positions, {len(PROMPTS)} prompts; the random adapters move "
          f"{moved['all']:.0%} (all seven projections) and {moved['qk']:.0%} (q, k) of the argmaxes")
    print("llama.cpp vs transformers+PEFT     top-1    max |Δlogit|   corr. of the adapter's effect")
    figures = {}
    for e, label in (("f32", "F32 base"), ("q4", "Q4_1 base")):
        for k in ("base", "all", "qk", "qk_unpermuted"):
            hf = r["hf_qk"] if k == "qk_unpermuted" else r[f"hf_{k}"]
            top1, worst = agreement(hf, r[f"{e}_{k}"])
            effect = (float("nan") if k == "base" else
                      correlation(hf - r["hf_base"], r[f"{e}_{k}"] - r[f"{e}_base"]))
            figures[(e, k)] = (top1, worst, effect)
            print(f"  {label:10} + {k:14} {top1:7.1%}   {worst:10.4f}   {effect:10.4f}")

    assert min(moved.values()) > 0.3, "the adapters must change the predictions, or this proves nothing"
    # Same weights (F32): the engines agree to rounding, with or without our adapter.
    for k in ("base", "all", "qk"):
        top1, worst, _ = figures[("f32", k)]
        assert top1 >= 0.98 and worst < 0.2, (k, top1, worst)
    # The shipped Q4_1 base: llama.cpp quantizes activations, so logits differ by up to a few
    # units, but what the adapter changes is the same change.
    for k in ("all", "qk"):
        top1, _, effect = figures[("q4", k)]
        assert top1 >= 0.9 and effect > 0.98, (k, top1, effect)
    # Without the permutation the q/k adapter is silently wrong, and the test sees it.
    for e in ("f32", "q4"):
        assert figures[(e, "qk_unpermuted")][2] < 0.5
    # Scale 0 is the base model, exactly.
    for e in ("f32", "q4"):
        np.testing.assert_array_equal(r[f"{e}_zero"], r[f"{e}_base"])


@pytest.mark.slow
def test_llama_cpp_refuses_an_adapter_for_another_base(llama_cpp_lora: LlamaCppLora, tmp_path: Path) -> None:
    import llama_cpp

    state = peft_state(layers=1)  # the tiny shapes: not SmolLM2's
    write_lora_gguf(tmp_path / "tiny.gguf", state, LLAMA, alpha=16)
    assert not llama_cpp.llama_adapter_lora_init(llama_cpp_lora.llm._model.model,
                                                 str(tmp_path / "tiny.gguf").encode())
    write_lora_gguf(tmp_path / "qwen.gguf", state, LoraBase("qwen2", HEADS, KV_HEADS), alpha=16)
    assert not llama_cpp.llama_adapter_lora_init(llama_cpp_lora.llm._model.model,
                                                 str(tmp_path / "qwen.gguf").encode())
