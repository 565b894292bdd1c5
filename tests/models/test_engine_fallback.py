"""The engine proves itself at load, falls back to safer settings, remembers them, and stops a
long prefill at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.models.engine import Engine
from bastion.models.engine_fallback import (
    FAULT_ENV,
    FallbackMemory,
    Rung,
    describe,
    fault_for,
    safer_rungs,
)
from bastion.models.engine_types import ChatDelta, ChatDone, LoadOptions, Sampling
from bastion.models.errors import EngineCrashed

GREEDY = Sampling(max_tokens=16, temperature=0.0, repeat_penalty=1.0)
OPTIONS = LoadOptions(n_ctx=2048, n_threads=2)
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def answer(engine: Engine, messages: list[dict[str, str]]) -> tuple[str, ChatDone]:
    text, done = "", None
    for event in engine.chat(messages, GREEDY):
        if isinstance(event, ChatDelta):
            text += event.text
        else:
            done = event
    assert isinstance(done, ChatDone)
    return text, done


# -- the ladder, without a model ------------------------------------------------------------------


def test_each_rung_adds_one_safer_setting_to_the_ones_before() -> None:
    rungs = safer_rungs(OPTIONS)
    assert [r.name for r in rungs] == [
        "default", "no-extra-bufts", "no-mmap", "one-thread", "baseline-kernels"]
    last = rungs[-1].options
    assert (last.use_extra_bufts, last.use_mmap, last.n_threads, last.cpu_kernels) == (
        False, False, 1, "baseline")
    assert rungs[0].options == OPTIONS
    # Settings already safe are not tried twice.
    assert [r.name for r in safer_rungs(LoadOptions(n_threads=1, use_mmap=False))] == [
        "default", "no-extra-bufts", "baseline-kernels"]


def test_the_amx_crash_is_named_as_such() -> None:
    rung = Rung("no-extra-bufts", OPTIONS)
    note = describe(rung, "sapphirerapids", "it was stopped by SIGSEGV (a crash)")
    assert note.startswith("AMX kernels disabled on this CPU: they crash in this llama.cpp build")
    assert "SIGSEGV" in note
    assert "repacked" in describe(rung, "haswell", "x")


def test_the_fault_switch_strikes_only_under_the_named_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "crash:extra_bufts")
    assert fault_for(OPTIONS) == "crash"
    assert fault_for(LoadOptions(use_extra_bufts=False)) is None
    monkeypatch.setenv(FAULT_ENV, "garbage:always")
    assert fault_for(LoadOptions(use_extra_bufts=False)) == "garbage"
    monkeypatch.delenv(FAULT_ENV)
    assert fault_for(OPTIONS) is None


def test_memory_keeps_the_rung_per_model_file(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x")
    memory = FallbackMemory(tmp_path / "home" / "engine-fallbacks.json")
    key = memory.key(model, OPTIONS)
    assert memory.recall(key) is None
    memory.remember(key, "no-extra-bufts", "repacked weights disabled", "m.gguf")
    assert FallbackMemory(memory.path).recall(key) == ("no-extra-bufts", "repacked weights disabled")
    assert memory.in_force() == [("m.gguf", "repacked weights disabled")]
    model.write_bytes(b"a new file")  # another file: tried from the start again
    assert memory.key(model, OPTIONS) != key
    memory.path.write_text("{not json")  # a damaged file forgets, it does not fail
    assert memory.recall(key) is None


# -- the real engine ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_crash_at_the_first_decode_falls_back_and_answers(
    smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "crash:extra_bufts")  # as the AMX kernels do on Sapphire Rapids
    memory = FallbackMemory(tmp_path / "engine-fallbacks.json")
    with Engine(memory) as engine:
        info = engine.load(smollm2_path, OPTIONS)
        assert info.fallback is not None and info.fallback_is_new
        assert "extra buffer types" in info.fallback and "SIGSEGV" in info.fallback
        text, done = answer(engine, FRANCE)
        assert "Paris" in text and done.stats.generated_tokens > 0
    # The next load starts on the setting that worked: no crash to find, nothing new to tell.
    with Engine(memory) as engine:
        info = engine.load(smollm2_path, OPTIONS)
        assert info.fallback is not None and not info.fallback_is_new
        assert "Paris" in answer(engine, FRANCE)[0]


@pytest.mark.slow
def test_garbage_logits_fail_the_self_test(smollm2_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "garbage:mmap")
    with Engine() as engine:
        info = engine.load(smollm2_path, OPTIONS)
        assert info.fallback is not None and "instead of mapped" in info.fallback
        assert "non-finite or flat logits" in info.fallback


@pytest.mark.slow
def test_an_engine_that_fails_every_rung_says_so_and_keeps_the_old_model(
    smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Engine() as engine:
        engine.load(smollm2_path, OPTIONS)
        monkeypatch.setenv(FAULT_ENV, "crash:always")
        with pytest.raises(EngineCrashed, match="self-test failed with every safer setting"):
            engine.load(smollm2_path, OPTIONS)
        monkeypatch.delenv(FAULT_ENV)
        assert "Paris" in answer(engine, FRANCE)[0]  # the model loaded before still answers


@pytest.mark.slow
def test_stop_during_a_long_prefill_leaves_the_cache_consistent(smollm2_path: Path) -> None:
    long_question = "Summarise this text. " + " ".join(f"Sentence number {i} is here." for i in range(300))
    with Engine() as engine:
        engine.load(smollm2_path, LoadOptions(n_ctx=4096, n_threads=2, n_batch=512))
        events = engine.chat([{"role": "user", "content": long_question}], GREEDY)
        timer = threading.Timer(0.3, engine.cancel)
        timer.start()
        done = None
        for event in events:
            if isinstance(event, ChatDone):
                done = event
        timer.join()
        assert done is not None
        assert done.stats.finish_reason == "cancelled"
        assert done.stats.generated_tokens == 0  # stopped inside the prefill
        # What reached the KV cache before the stop is reused correctly: the same answer as a
        # fresh engine gives.
        after, _ = answer(engine, FRANCE)
    with Engine() as fresh:
        fresh.load(smollm2_path, LoadOptions(n_ctx=4096, n_threads=2, n_batch=512))
        assert answer(fresh, FRANCE)[0] == after


@pytest.fixture(autouse=True)
def _no_fault_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(FAULT_ENV, raising=False)
    yield
