"""Merging a LoRA adapter into its base: the merged model computes what base + adapter does, and
a mismatched adapter is refused without leaving a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.models.engine import Engine
from bastion.models.engine_types import AdapterUse, ChatDelta, LoadOptions, Sampling
from bastion.models.gguf_file import read_gguf_info
from bastion.models.lora_merge import MergeError, merge_adapter
from tests.models.llama_lora import LlamaCppLora
from tests.models.lora_factory import random_adapter

pytestmark = pytest.mark.slow

GREEDY = Sampling(max_tokens=6, temperature=0.0, repeat_penalty=1.0)
QUESTIONS = ["Name three colours of the rainbow.", "What do bees make?"]
CONVERSATIONS = [
    "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n"
    "The three colours of the rainbow are red, yellow and blue.",
    "<|im_start|>user\nWhat do bees make?<|im_end|>\n<|im_start|>assistant\n"
    "Bees make honey and wax in their hives.",
]


def answers(model: Path, adapters: tuple[AdapterUse, ...] = ()) -> list[str]:
    with Engine() as engine:
        engine.load(model, LoadOptions(n_ctx=512, n_threads=2))
        return ["".join(e.text for e in engine.chat([{"role": "user", "content": q}], GREEDY, adapters)
                        if isinstance(e, ChatDelta)) for q in QUESTIONS]


def test_the_merged_model_computes_what_base_plus_adapter_computes(smollm2_path: Path,
                                                                  tmp_path: Path) -> None:
    adapter = random_adapter(tmp_path / "vivid.gguf", strength=0.2, seed=1)
    merged = merge_adapter(smollm2_path, adapter, tmp_path / "merged.gguf", quantization="Q8_0")
    assert merged.merged_weights == 60  # q and v of 30 layers
    info = read_gguf_info(merged.path)  # a valid model for Bastion's own checks
    assert info.architecture == "llama"

    # Next-token logits over two conversations. Greedy answers are not compared word for word:
    # the merged weights are requantized to Q8_0, and a near-tie may fall either way on one CPU
    # and not another; the logits show how close the two models are.
    base_model, merged_model = LlamaCppLora(smollm2_path), LlamaCppLora(merged.path)
    try:
        attached = base_model.load(adapter)
        rows: dict[str, list[np.ndarray]] = {"base": [], "adapted": [], "merged": []}
        for text in CONVERSATIONS:
            ids = base_model.llm.tokenize(text.encode(), add_bos=False, special=True)
            rows["base"].append(base_model.logits(ids))
            rows["adapted"].append(base_model.logits(ids, attached))
            rows["merged"].append(merged_model.logits(ids))
    finally:
        base_model.close()
        merged_model.close()
    base, adapted, merged_logits = (np.concatenate(rows[k]) for k in ("base", "adapted", "merged"))

    def top1(a: np.ndarray, b: np.ndarray) -> float:
        return float((a.argmax(-1) == b.argmax(-1)).mean())

    def rms(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(((a - b) ** 2).mean()))

    # Seen on a Sapphire Rapids (AVX-512): top-1 agreement 100% (base: 77%), RMS logit
    # gap 0.36 (base: 4.6), the adapter's effect reproduced with correlation 0.997.
    assert top1(merged_logits, adapted) >= 0.95 > top1(base, adapted)
    assert rms(merged_logits, adapted) < 0.2 * rms(base, adapted)
    assert np.corrcoef((merged_logits - base).ravel(), (adapted - base).ravel())[0, 1] > 0.98
    # And Bastion's engine loads it and answers as the adapted model does, not as the base.
    assert answers(merged.path) != answers(smollm2_path)


def test_an_adapter_for_another_base_is_refused_and_leaves_nothing(smollm2_path: Path, tmp_path: Path) -> None:
    wrong = random_adapter(tmp_path / "wrong.gguf", layers=2,
                           shapes={"q_proj": (1152, 1152), "v_proj": (128, 1152)})
    out = tmp_path / "models" / "merged.gguf"
    with pytest.raises(MergeError, match="another base model"):
        merge_adapter(smollm2_path, wrong, out, quantization="F16")
    assert list(out.parent.iterdir()) == []
