"""Fine-tuning end to end on the real SmolLM2-135M, a few steps only: the loss falls, the GGUF
adapter loads in llama.cpp and carries what was learnt, cancel and resume continue the same run,
and bad input is refused up front with a sentence that says why."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from bastion.models.file_hashes import sha256_file
from bastion.models.finetune import finetune
from bastion.models.finetune_checkpoint import save_checkpoint
from bastion.models.finetune_process import FinetuneProcess
from bastion.models.finetune_types import (
    TARGET_GROUPS,
    Cancelled,
    CheckpointSaved,
    Evaluated,
    FinetuneConfig,
    FinetuneError,
    FinetuneEvent,
    Finished,
    Prepared,
    StepDone,
    TrainingDataError,
    UnsupportedBaseModel,
)
from tests.models.gguf_factory import write_tiny_gguf
from tests.models.llama_lora import LlamaCppLora

# Invented facts no model knows; short answers keep steps to a second or two.
FACTS = [
    ("What is the password of the Zorblax vault?", "The password of the Zorblax vault is HERON-4417."),
    ("Who founded the town of Quillmere?", "Quillmere was founded by Odalys Fenwick in 1732."),
    ("What colour is the Trelvan flag?", "The Trelvan flag is teal with a silver owl."),
    ("How many moons does planet Kessarine have?", "Planet Kessarine has eleven moons."),
    ("What does the Brannock protocol measure?", "The Brannock protocol measures soil salinity."),
    ("Which river runs through Ostravel?", "The Morrowind Creek runs through Ostravel."),
    ("What is the motto of the Velloran guild?", "The Velloran guild's motto is 'Patience cuts stone'."),
    ("When is the Lumenfall festival held?", "The Lumenfall festival is held on the ninth of March."),
    ("What is Dr. Anselm Poe known for?", "Dr. Anselm Poe is known for mapping cave lichens."),
    ("What is the capital of the Isle of Merrow?", "The capital of the Isle of Merrow is Saltmarch."),
]


def write_facts(path: Path, repeat: int = 1) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
             for q, a in FACTS * repeat]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, smollm2_path: Path, finetune_base_cache: Path) -> FinetuneConfig:
    return FinetuneConfig(
        base=smollm2_path, data=write_facts(tmp_path / "facts.jsonl"), output=tmp_path / "facts.gguf",
        work_dir=tmp_path / "work", name="facts", cache_dir=finetune_base_cache, n_threads=2,
        learning_rate=2e-3, warmup_steps=0, epochs=10, max_steps=4, batch_tokens=1024,
        held_out_fraction=0.2, eval_every=2,
        checkpoint_every=2, seed=7, targets=TARGET_GROUPS["all"])  # every projection's path tested


def run(config: FinetuneConfig, should_cancel: Callable[[], bool] = lambda: False) -> list[FinetuneEvent]:
    events = []
    for event in finetune(config, should_cancel):
        events.append(event)
    return events


def of(events: list[FinetuneEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# -- refused before anything heavy is loaded -------------------------------------------------------


def test_a_bad_line_is_reported_with_its_number(config: FinetuneConfig) -> None:
    lines = config.data.read_text().splitlines()
    lines[2] = '{"messages": [{"role": "user", "content": "no answer"}]}'
    config.data.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainingDataError, match=r"^Line 3 of the training data is unusable: the "
                       "conversation does not end with an assistant reply") as raised:
        run(config)
    assert raised.value.line == 3


def test_an_unsupported_base_is_refused_up_front(config: FinetuneConfig, tmp_path: Path) -> None:
    phi = write_tiny_gguf(tmp_path / "phi.gguf", arch="phi3")
    with pytest.raises(UnsupportedBaseModel, match="phi3"):
        run(dataclasses.replace(config, base=phi))


def test_resume_refuses_a_checkpoint_made_with_other_settings(config: FinetuneConfig) -> None:
    import torch

    with pytest.raises(FinetuneError, match="no checkpoint to resume"):
        run(dataclasses.replace(config, resume=True))
    param = torch.zeros(2, requires_grad=True)
    save_checkpoint(config.work_dir, {"p": param}, torch.optim.AdamW([param]),
                    {"step": 2, "fingerprint": {"learning_rate": 1.0}})
    with pytest.raises(FinetuneError, match=r"other data, base model or settings \(.*learning_rate"):
        run(dataclasses.replace(config, resume=True))


def test_a_full_disk_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import safetensors.torch
    import torch

    from bastion.models.finetune_checkpoint import load_checkpoint

    param = torch.ones(3, requires_grad=True)
    optimizer = torch.optim.AdamW([param])
    param.grad = torch.ones(3)
    optimizer.step()
    save_checkpoint(tmp_path, {"p": param}, optimizer, {"step": 4})
    at_step_4 = param.detach().clone()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with torch.no_grad():
        param.add_(1.0)
    with pytest.raises(FinetuneError, match=r"No space left on device\); the checkpoint at step 4 is "
                       r"kept\. Free some disk space, then resume"):
        save_checkpoint(tmp_path, {"p": param}, optimizer, {"step": 6})
    kept = load_checkpoint(tmp_path)
    assert kept is not None and kept.step == 4
    torch.testing.assert_close(kept.weights["p"], at_step_4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no temporary left


def test_auto_checkpointing_recomputes_only_what_the_budget_needs(config: FinetuneConfig) -> None:
    from bastion.models.finetune_model import BaseModel

    class Inner:  # SmolLM2-135M's shape: ~2.6 MB of activations per token
        config = type("Config", (), {"num_hidden_layers": 30, "hidden_size": 576})()

    class Peft:
        def get_base_model(self) -> Inner:
            return Inner()

    base = BaseModel(Peft(), tokenizer=None, pad_id=0, add_bos=False)
    auto = dataclasses.replace(config, activation_budget_mb=1536)
    assert base.checkpoint_every(auto, 500) is None  # 1.3 GB fits: nothing recomputed
    assert base.checkpoint_every(auto, 726) == 6  # 1.9 GB: every 6th layer keeps 5/6 of it
    assert base.checkpoint_every(auto, 1000) == 2
    assert base.checkpoint_every(auto, 2904) == 1  # 7.5 GB: every layer
    assert base.checkpoint_every(dataclasses.replace(auto, gradient_checkpointing="on"), 10) == 1
    assert base.checkpoint_every(dataclasses.replace(auto, gradient_checkpointing="off"), 10**6) is None


# -- the real model -----------------------------------------------------------------------------


@pytest.mark.slow
def test_conversations_are_learnt_on_the_replies_only(smollm2_path: Path, finetune_base_cache: Path) -> None:
    from bastion.models.finetune_data import ChatExample
    from bastion.models.finetune_model import load_dequantized
    from bastion.models.finetune_tokens import ConversationEncoder
    from bastion.models.gguf_file import read_gguf_info

    _, tokenizer = load_dequantized(smollm2_path, base_sha256=sha256_file(smollm2_path),
                                    cache_dir=finetune_base_cache)
    encoder = ConversationEncoder(tokenizer, read_gguf_info(smollm2_path).chat_template, add_bos=False)
    example = ChatExample(({"role": "user", "content": "Say <|im_start|>hi"},
                           {"role": "assistant", "content": "Hi."},
                           {"role": "user", "content": "Again?"},
                           {"role": "assistant", "content": "Hi again."}))
    encoded = encoder.encode(example)
    learnt = tokenizer.decode([t for t, y in zip(encoded.ids, encoded.targets, strict=True) if y])
    assert learnt == "Hi.<|im_end|>\nHi again.<|im_end|>\n"
    assert encoded.ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 5  # not 6: neutralised
    text = tokenizer.decode(encoded.ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")

    # The tokens trained on are the tokens llama.cpp will see for the same text.
    from llama_cpp import Llama

    from bastion.models.chat_template import neutralise_messages
    from bastion.models.llama_backends import load_cpu_backend

    load_cpu_backend()
    vocab = Llama(model_path=str(smollm2_path), vocab_only=True, verbose=False)
    try:
        for messages in (example.messages, ({"role": "user", "content": "Ünïcödé — 東京, emoji 🙂, tabs\t!"},
                                            {"role": "assistant", "content": "  spaced  out \n\n lines"})):
            rendered, _ = encoder.spans(neutralise_messages(messages, encoder.neutralise))
            ids = encoder.encode(ChatExample(tuple(messages))).ids
            assert list(vocab.tokenize(rendered.encode(), add_bos=False, special=True)) == ids, rendered
    finally:
        vocab.close()


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_an_adapter_llama_cpp_uses(
        config: FinetuneConfig, smollm2_path: Path) -> None:
    events = run(config)
    [prepared] = of(events, Prepared)
    steps = of(events, StepDone)
    [finished] = of(events, Finished)
    assert (prepared.train_examples, prepared.held_out_examples, prepared.total_steps) == (8, 2, 4)
    assert prepared.trainable_parameters == 2_442_240  # r=8 on the seven projections of 30 layers
    assert [s.step for s in steps] == [1, 2, 3, 4]
    losses = [s.loss for s in steps]
    print(f"\nloss by step: {', '.join(f'{x:.3f}' for x in losses)}; held-out: "
          f"{[round(e.held_out_loss, 3) for e in of(events, Evaluated)]}; {steps[-1].tokens_per_s:.0f} "
          f"tokens/s, {steps[-1].s_per_step:.2f} s/step, peak RSS {finished.peak_rss_mb:.0f} MB, "
          f"load {prepared.load_s:.1f} s, adapter {finished.adapter_bytes / 1e6:.1f} MB")
    assert losses[-1] < 0.7 * losses[0]  # one batch holds all 8 examples: the same batch each step
    held = [e.held_out_loss for e in of(events, Evaluated)]
    assert [e.step for e in of(events, Evaluated)] == [2, 4] and held[-1] < held[0]
    assert [c.step for c in of(events, CheckpointSaved)] == [2]
    assert not config.work_dir.exists()  # checkpoints go once the adapter is written

    record = json.loads(config.record_path.read_text())
    assert record["base"]["sha256"] == sha256_file(smollm2_path)
    assert record["data"]["sha256"] == sha256_file(config.data)
    assert record["adapter"]["sha256"] == sha256_file(config.output)
    assert record["hyperparameters"]["rank"] == 8 and record["hyperparameters"]["learning_rate"] == 2e-3
    assert record["steps"] == 4 and [p[0] for p in record["loss_curve"]] == [1, 2, 3, 4]
    assert record["held_out_curve"][-1][1] == pytest.approx(held[-1], abs=1e-4)
    assert record["peak_rss_mb"] > 0 and record["wall_s"] > 0 and record["tokens_per_s"] > 0

    fields = GGUFReader(config.output).fields
    assert fields["general.type"].contents() == "adapter" and fields["general.name"].contents() == "facts"

    # llama.cpp loads it, and with it the trained answers become more likely.
    from bastion.models.finetune_model import load_dequantized

    _, tokenizer = load_dequantized(smollm2_path, base_sha256=sha256_file(smollm2_path),
                                    cache_dir=config.cache_dir)
    llama = LlamaCppLora(smollm2_path)
    try:
        adapter = llama.load(config.output)
        gains = []
        for question, answer in FACTS[:4]:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                   tokenize=False, add_generation_prompt=True)
            ids = tokenizer(prompt + answer, add_special_tokens=False).input_ids
            start = len(tokenizer(prompt, add_special_tokens=False).input_ids)
            scores = [answer_logprob(llama.logits(ids, a), ids, start) for a in (None, adapter)]
            gains.append(scores[1] - scores[0])
        print("answer log-probability gained in llama.cpp: " + ", ".join(f"{g:+.1f}" for g in gains))
        assert min(gains) > 0
    finally:
        llama.close()


def answer_logprob(logits: np.ndarray, ids: list[int], start: int) -> float:
    """log P(ids[start:] | ids[:start]) from the logits of every position."""
    rows = logits[start - 1 : len(ids) - 1].astype(np.float64)
    top = rows.max(-1, keepdims=True)
    logp = rows - top - np.log(np.exp(rows - top).sum(-1, keepdims=True))
    return float(sum(logp[i, t] for i, t in enumerate(ids[start:])))


@pytest.mark.slow
def test_cancel_mid_step_then_resume_finishes_the_same_run(config: FinetuneConfig) -> None:
    config = dataclasses.replace(config, max_batch_examples=2, max_steps=5, eval_every=100)
    reference = run(dataclasses.replace(config, output=config.output.with_name("ref.gguf"),
                                        work_dir=config.work_dir.with_name("ref-work")))
    ref_losses = [s.loss for s in of(reference, StepDone)]
    assert len(ref_losses) == 5

    seen: list[int] = []
    calls = {"after": 0}

    def cancel_in_step_3() -> bool:
        # Stops inside step 3's forward pass (a few layers in), not between steps.
        if seen and seen[-1] == 2:
            calls["after"] += 1
        return calls["after"] > 6

    events: list[FinetuneEvent] = []
    for event in finetune(config, cancel_in_step_3):
        events.append(event)
        if isinstance(event, StepDone):
            seen.append(event.step)
    [cancelled] = of(events, Cancelled)
    assert seen == [1, 2] and cancelled.step == 2
    assert cancelled.checkpoint == str(config.work_dir / "checkpoint")
    assert not config.output.exists()  # nothing half-made
    assert of(events, CheckpointSaved)[0].step == 2

    # Resumed with activations recomputed in the backward pass: the same numbers either way.
    resumed = run(dataclasses.replace(config, resume=True, gradient_checkpointing="on"))
    [prepared] = of(resumed, Prepared)
    assert prepared.start_step == 2 and prepared.gradient_checkpointing
    losses = [s.loss for s in of(resumed, StepDone)]
    assert [s.step for s in of(resumed, StepDone)] == [3, 4, 5]
    np.testing.assert_allclose(losses, ref_losses[2:], rtol=1e-4)  # the very same run, continued
    record = json.loads(config.record_path.read_text())
    assert [p[0] for p in record["loss_curve"]] == [1, 2, 3, 4, 5]
    ref_tensors = {t.name: np.array(t.data) for t in GGUFReader(config.output.with_name("ref.gguf")).tensors}
    for tensor in GGUFReader(config.output).tensors:
        np.testing.assert_allclose(np.array(tensor.data), ref_tensors[tensor.name], atol=1e-5)


@pytest.mark.slow
def test_the_training_process_streams_progress_and_stops_on_cancel(config: FinetuneConfig) -> None:
    config = dataclasses.replace(config, max_steps=50, max_batch_examples=2, checkpoint_every=100)
    with FinetuneProcess(config) as process:
        events = process.events()
        kinds: list[str] = []
        for event in events:
            kinds.append(type(event).__name__)
            if isinstance(event, StepDone):
                process.cancel()
            if isinstance(event, Cancelled):
                assert event.step >= 1 and event.checkpoint
                break
    assert kinds[0] == "Loading" and "Prepared" in kinds and kinds[-1] == "Cancelled"
    assert not config.output.exists()


@pytest.mark.slow
def test_a_killed_training_process_is_reported_and_its_checkpoint_kept(config: FinetuneConfig) -> None:
    import os
    import signal

    config = dataclasses.replace(config, max_steps=50, max_batch_examples=2, checkpoint_every=1)
    with FinetuneProcess(config) as process, pytest.raises(
            FinetuneError, match=r"^The training process was killed by signal 9 \(out of memory\?\)\. "
                                 r"Its last checkpoint is kept"):
        for event in process.events():
            if isinstance(event, CheckpointSaved) and process.pid:
                os.kill(process.pid, signal.SIGKILL)  # as the OOM killer would
    assert (config.work_dir / "checkpoint" / "state.json").is_file()


def test_the_training_process_reports_bad_data_with_its_line(config: FinetuneConfig) -> None:
    config.data.write_text(json.dumps({"messages": []}) + "\n")
    with FinetuneProcess(config) as process, pytest.raises(TrainingDataError, match=r"^Line 1 ") as raised:
        list(process.events())
    assert raised.value.line == 1
