"""LoRA adapters on a loaded model: attach at a scale, switch without reloading, clear."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.models.engine import Engine
from bastion.models.engine_types import AdapterUse, ChatDelta, ChatDone, LoadOptions, Sampling
from bastion.models.errors import ModelLoadFailed
from tests.models.lora_factory import random_adapter

pytestmark = pytest.mark.slow

GREEDY = Sampling(max_tokens=20, temperature=0.0, repeat_penalty=1.0)
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    with Engine() as engine:
        engine.load(smollm2_path, LoadOptions(n_ctx=1024, n_threads=2))
        yield engine


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return {
        "strong": random_adapter(folder / "strong.gguf", strength=0.2, seed=1),
        "other": random_adapter(folder / "other.gguf", strength=0.2, seed=2, modules=("o_proj",)),
    }


def ask(engine: Engine, adapters: tuple[AdapterUse, ...] = ()) -> tuple[str, ChatDone]:
    text, done = "", None
    for event in engine.chat(QUESTION, GREEDY, adapters):
        if isinstance(event, ChatDelta):
            text += event.text
        else:
            done = event
    assert isinstance(done, ChatDone)
    return text, done


def test_an_adapter_changes_the_answer_and_clearing_it_restores_the_base(
    engine: Engine, adapters: dict[str, Path]
) -> None:
    pid = engine.pid
    base, _ = ask(engine)
    adapted, done = ask(engine, (AdapterUse(str(adapters["strong"]), 1.0),))
    assert adapted != base
    assert done.stats.adapter_switch_s > 0 and done.stats.cached_tokens == 0  # cache was reset
    # Unchanged: nothing to switch, and the prompt is reused from the cache. The answer is not
    # compared word for word with ``adapted``: its last prompt token is decoded alone instead
    # of with the whole prompt, which rounds differently, and on some CPUs (AVX-512) that
    # flips a near-tie a few words in. The same path twice gives the same answer.
    again, done = ask(engine, (AdapterUse(str(adapters["strong"]), 1.0),))
    assert done.stats.adapter_switch_s == 0 and done.stats.cached_tokens > 0
    assert again != base and ask(engine, (AdapterUse(str(adapters["strong"]), 1.0),))[0] == again
    assert ask(engine)[0] == base
    assert engine.pid == pid  # the base model was never reloaded


def test_scale_zero_answers_as_the_base(engine: Engine, adapters: dict[str, Path]) -> None:
    base, _ = ask(engine)
    assert ask(engine, (AdapterUse(str(adapters["strong"]), 0.0),))[0] == base


def test_two_adapters_at_once_differ_from_either_alone(engine: Engine, adapters: dict[str, Path]) -> None:
    strong = AdapterUse(str(adapters["strong"]), 1.0)
    other = AdapterUse(str(adapters["other"]), 1.0)
    both, _ = ask(engine, (strong, other))
    assert both not in (ask(engine, (strong,))[0], ask(engine, (other,))[0])


def test_an_adapter_for_another_base_is_refused_and_the_engine_goes_on(
    engine: Engine, tmp_path: Path
) -> None:
    wrong = random_adapter(tmp_path / "wrong.gguf", layers=2,
                           shapes={"q_proj": (1152, 1152), "v_proj": (128, 1152)})
    base, _ = ask(engine)
    with pytest.raises(ModelLoadFailed, match=r"wrong\.gguf"):
        ask(engine, (AdapterUse(str(wrong), 1.0),))
    assert ask(engine)[0] == base
