"""Merging a LoRA adapter into its base: the merged model answers as base + adapter does, and a
mismatched adapter is refused without leaving a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.models.engine import Engine
from bastion.models.engine_types import AdapterUse, ChatDelta, LoadOptions, Sampling
from bastion.models.gguf_file import read_gguf_info
from bastion.models.lora_merge import MergeError, merge_adapter
from tests.models.lora_factory import random_adapter

pytestmark = pytest.mark.slow

GREEDY = Sampling(max_tokens=6, temperature=0.0, repeat_penalty=1.0)
QUESTIONS = ["Name three colours of the rainbow.", "What do bees make?"]


def answers(model: Path, adapters: tuple[AdapterUse, ...] = ()) -> list[str]:
    with Engine() as engine:
        engine.load(model, LoadOptions(n_ctx=512, n_threads=2))
        return ["".join(e.text for e in engine.chat([{"role": "user", "content": q}], GREEDY, adapters)
                        if isinstance(e, ChatDelta)) for q in QUESTIONS]


def test_the_merged_model_answers_as_base_plus_adapter(smollm2_path: Path, tmp_path: Path) -> None:
    adapter = random_adapter(tmp_path / "vivid.gguf", strength=0.2, seed=1)
    merged = merge_adapter(smollm2_path, adapter, tmp_path / "merged.gguf", quantization="Q8_0")
    assert merged.merged_weights == 60  # q and v of 30 layers
    info = read_gguf_info(merged.path)  # a valid model for Bastion's own checks
    assert info.architecture == "llama"
    with_adapter = answers(smollm2_path, (AdapterUse(str(adapter), 1.0),))
    assert answers(merged.path) == with_adapter
    assert with_adapter != answers(smollm2_path)


def test_an_adapter_for_another_base_is_refused_and_leaves_nothing(smollm2_path: Path, tmp_path: Path) -> None:
    wrong = random_adapter(tmp_path / "wrong.gguf", layers=2,
                           shapes={"q_proj": (1152, 1152), "v_proj": (128, 1152)})
    out = tmp_path / "models" / "merged.gguf"
    with pytest.raises(MergeError, match="another base model"):
        merge_adapter(smollm2_path, wrong, out, quantization="F16")
    assert list(out.parent.iterdir()) == []
