"""Train a LoRA adapter on CPU and write it as a GGUF adapter llama.cpp can attach.

``finetune(config)`` is a generator: every event it yields is progress (plain data), and the
caller stops it with ``should_cancel`` (checked before each decoder layer, forward and backward,
so a step stops within a fraction of a second) or by closing it. It is a plain loop in the manner
of mlx-lm's trainer: token-budgeted batches of similar length, AdamW on the LoRA factors only,
warm-up then cosine decay, periodic held-out loss and checkpoints, resume from the last one.

Memory is bounded by construction: a step holds at most ``batch_tokens`` tokens; the output layer
(a 49k-word vocabulary for SmolLM2) is applied to the answer tokens only, in chunks that are
recomputed in the backward pass, so full-vocabulary logits never fill memory; and gradient
checkpointing is switched on when a step's activations would exceed a budget.

Everything loads from local paths, offline: the base GGUF is dequantized by transformers
(``gguf_file=``), no hub, no remote code. Run it in a separate process (``finetune_process``).
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .file_hashes import sha256_file, write_json_atomic
from .finetune_checkpoint import (
    CURRENT,
    load_checkpoint,
    remove_checkpoints,
    restore,
    save_checkpoint,
)
from .finetune_data import read_chat_jsonl_hashed, split_held_out
from .finetune_model import (
    BaseModel,
    CancelHooks,
    TrainingCancelled,
    batch_loss,
    batch_tensors,
    load_base_model,
)
from .finetune_tokens import ConversationEncoder, TokenizedExample, epoch_order, token_batches
from .finetune_types import (
    Cancelled,
    CheckpointSaved,
    Evaluated,
    FinetuneConfig,
    FinetuneError,
    FinetuneEvent,
    Finished,
    Loading,
    Prepared,
    StepDone,
    TrainingDataError,
    check_base_model,
)
from .lora_gguf import write_lora_gguf

# Settings that change what is learnt: a checkpoint resumes only under the same ones.
_FINGERPRINT_KEYS = (
    "rank", "alpha", "dropout", "targets", "learning_rate", "warmup_steps", "weight_decay",
    "max_grad_norm", "epochs", "max_steps", "batch_tokens", "max_batch_examples",
    "max_seq_tokens", "held_out_fraction", "max_held_out", "seed",
)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if os.uname().sysname != "Darwin" else peak / (1024 * 1024)


def learning_rate_at(step: int, total: int, config: FinetuneConfig) -> float:
    """Linear warm-up over ``warmup_steps`` (at most a tenth of the run), then cosine decay to a
    tenth of the peak; ``step`` counts from 0."""
    warmup = max(1, min(config.warmup_steps, total // 10))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _fingerprint(config: FinetuneConfig, base_sha: str, data_sha: str) -> dict[str, Any]:
    settings = config.to_json()
    return {"base_sha256": base_sha, "data_sha256": data_sha,
            **{k: settings[k] for k in _FINGERPRINT_KEYS}}


def _encode(encoder: ConversationEncoder, examples: Sequence[Any],
            max_tokens: int) -> tuple[list[TokenizedExample], int]:
    kept: list[TokenizedExample] = []
    too_long = 0
    for example in examples:
        encoded = encoder.encode(example)
        if len(encoded.ids) > max_tokens:
            too_long += 1
        elif encoded.n_targets:
            kept.append(encoded)
    return kept, too_long


def evaluate(base: BaseModel, examples: Sequence[TokenizedExample], config: FinetuneConfig) -> float:
    """Mean loss per answer token over ``examples`` (no gradients, dropout off)."""
    import torch

    groups = token_batches(examples, batch_tokens=config.batch_tokens,
                           max_examples=config.max_batch_examples, seed=config.seed)
    total, count = 0.0, 0
    base.model.eval()
    try:
        with torch.no_grad():
            for group in groups:
                batch = batch_tensors([examples[i] for i in group], base.pad_id)
                loss_sum, n = batch_loss(base, batch, config.loss_chunk_tokens)
                total += float(loss_sum)
                count += n
    finally:
        base.model.train()
    return total / max(1, count)


def finetune(config: FinetuneConfig,
             should_cancel: Callable[[], bool] = lambda: False) -> Iterator[FinetuneEvent]:
    """Train a LoRA adapter as ``config`` says, yielding progress; write the GGUF adapter and
    its training record at the end.

    Args:
        config: the run's settings (see ``FinetuneConfig``).
        should_cancel: polled often; when it returns True the run saves a checkpoint of its last
            whole step, yields ``Cancelled`` and ends without writing an adapter.

    Yields:
        ``Loading`` while preparing, ``Prepared`` once, ``StepDone`` per step, ``Evaluated``,
        ``CheckpointSaved``, and finally ``Finished`` or ``Cancelled``.

    Raises:
        FinetuneError (and its kinds UnsupportedBaseModel, TrainingDataError): with a message
        saying what to do; InvalidModelFile for a damaged base.
    """
    started = time.perf_counter()
    config.check()
    info = check_base_model(config.base)
    yield Loading("data", str(config.data))
    examples, data_sha = read_chat_jsonl_hashed(config.data)
    yield Loading("hashing", config.base.name)
    base_sha = config.base_sha256 or sha256_file(config.base)
    fingerprint = _fingerprint(config, base_sha, data_sha)
    checkpoint = load_checkpoint(config.work_dir) if config.resume else None
    if config.resume:
        if checkpoint is None:
            raise FinetuneError(f"There is no checkpoint to resume in {config.work_dir}; start "
                                "the training without resuming.")
        changed = [k for k, v in fingerprint.items() if checkpoint.state.get("fingerprint", {}).get(k) != v]
        if changed:
            raise FinetuneError(
                "The checkpoint was made with other data, base model or settings ("
                + ", ".join(changed) + "); resume with the same ones, or start again.")

    kept = (checkpoint.step, str(checkpoint.path)) if checkpoint is not None else (0, None)
    if should_cancel():
        yield Cancelled(*kept)
        return
    yield Loading("model", config.base.name)
    base = load_base_model(config, info, base_sha)
    load_s = time.perf_counter() - started
    if should_cancel():  # loading takes seconds to a minute: a Cancel meanwhile counts
        yield Cancelled(*kept)
        return

    yield Loading("data", "tokenizing")
    train_examples, held_examples = split_held_out(
        examples, config.held_out_fraction, seed=config.seed, max_held_out=config.max_held_out)
    encoder = ConversationEncoder(base.tokenizer, info.chat_template, add_bos=base.add_bos)
    train, too_long = _encode(encoder, train_examples, config.max_seq_tokens)
    held, held_too_long = _encode(encoder, held_examples, config.max_seq_tokens)
    if not train:
        raise TrainingDataError(
            f"No training example fits in {config.max_seq_tokens} tokens ({too_long} are longer). "
            "Raise the sequence limit or use shorter passages.")
    groups = token_batches(train, batch_tokens=config.batch_tokens,
                           max_examples=config.max_batch_examples, seed=config.seed)
    total_steps = len(groups) * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    padded = [len(g) * max(len(train[i].ids) for i in g) for g in groups]
    checkpointed = any(base.checkpoint_every(config, n) is not None for n in padded)

    import torch

    params = {n: p for n, p in base.model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    state: dict[str, Any] = {"step": 0, "loss_curve": [], "held_out_curve": [], "tokens": 0,
                             "train_s": 0.0, "fingerprint": fingerprint}
    if checkpoint is not None:
        yield Loading("checkpoint", str(checkpoint.path))
        restore(checkpoint, params, optimizer)
        state.update({k: checkpoint.state[k] for k in ("step", "loss_curve", "held_out_curve",
                                                        "tokens", "train_s") if k in checkpoint.state})
    yield Prepared(len(train), len(held), too_long + held_too_long, total_steps, state["step"],
                   sum(p.numel() for p in params.values()), checkpointed, round(load_s, 2))

    def save() -> Path:
        return save_checkpoint(config.work_dir, params, optimizer, state)

    saved_step = state["step"]

    def keep() -> str | None:
        """The checkpoint a cancelled run resumes from: the last whole step, saved if new."""
        if state["step"] > saved_step:
            return str(save())
        return str(config.work_dir / CURRENT) if saved_step > 0 else None

    recent: list[float] = []
    base.model.train()
    with CancelHooks(base, should_cancel) as hooks:
        while state["step"] < total_steps:
            step = state["step"]
            epoch, index = divmod(step, len(groups))
            group = groups[epoch_order(len(groups), config.seed, epoch)[index]]
            batch = batch_tensors([train[i] for i in group], base.pad_id)
            lr = learning_rate_at(step, total_steps, config)
            for slot in optimizer.param_groups:
                slot["lr"] = lr
            torch.manual_seed(config.seed * 1_000_003 + step)  # dropout repeats on resume
            base.set_checkpointing(base.checkpoint_every(config, batch.ids.numel()))
            t0 = time.perf_counter()
            try:
                hooks.check()
                loss_sum, n = batch_loss(base, batch, config.loss_chunk_tokens)
                loss = loss_sum / n
                loss.backward()
                hooks.check()
            except TrainingCancelled:
                optimizer.zero_grad(set_to_none=True)
                yield Cancelled(state["step"], keep())
                return
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(list(params.values()), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FinetuneError(f"The loss became {value} at step {step + 1}: training "
                                    "diverged. Lower the learning rate and start again.")
            state["step"] = step + 1
            state["tokens"] += batch.tokens
            state["train_s"] += dt
            state["loss_curve"].append([step + 1, round(value, 5)])
            recent = [*recent, dt][-20:]
            per_step = sum(recent) / len(recent)
            yield StepDone(step + 1, total_steps, epoch + 1, value, lr, batch.tokens,
                           state["tokens"] / max(state["train_s"], 1e-9), per_step,
                           per_step * (total_steps - step - 1), peak_rss_mb())
            last = state["step"] == total_steps
            if held and (state["step"] % config.eval_every == 0 or last):
                held_loss = evaluate(base, held, config)
                state["held_out_curve"].append([state["step"], round(held_loss, 5)])
                yield Evaluated(state["step"], held_loss)
            if state["step"] % config.checkpoint_every == 0 and not last:
                path = save()
                saved_step = state["step"]
                yield CheckpointSaved(saved_step, str(path))
            if should_cancel():
                yield Cancelled(state["step"], keep())
                return

    written = write_lora_gguf(
        config.output, base.lora_state(), base.lora_base(info, base_sha), alpha=config.alpha,
        name=config.name, tensor_type=config.tensor_type)
    record = _record(config, state, info, base_sha, data_sha, written.size_bytes,
                     examples=len(examples), train=len(train), held=len(held),
                     too_long=too_long + held_too_long, checkpointed=checkpointed,
                     load_s=load_s, wall_s=time.perf_counter() - started)
    write_json_atomic(config.record_path, record)
    remove_checkpoints(config.work_dir)
    held_curve = state["held_out_curve"]
    yield Finished(str(written.path), str(config.record_path), state["step"],
                   state["loss_curve"][-1][1] if state["loss_curve"] else float("nan"),
                   held_curve[-1][1] if held_curve else None, record["wall_s"],
                   record["peak_rss_mb"], written.size_bytes, record)


def _record(config: FinetuneConfig, state: dict[str, Any], info: Any, base_sha: str,
            data_sha: str, adapter_bytes: int, *, examples: int, train: int, held: int,
            too_long: int, checkpointed: bool, load_s: float, wall_s: float) -> dict[str, Any]:
    from importlib.metadata import version

    settings = config.to_json()
    return {
        "adapter": {"name": config.name, "file": config.output.name, "bytes": adapter_bytes,
                    "sha256": sha256_file(config.output), "tensor_type": config.tensor_type},
        "base": {"file": str(config.base), "name": info.name, "architecture": info.architecture,
                 "sha256": base_sha},
        "data": {"file": str(config.data), "sha256": data_sha, "examples": examples,
                 "train": train, "held_out": held, "left_out_too_long": too_long},
        "hyperparameters": {k: settings[k] for k in _FINGERPRINT_KEYS},
        "steps": state["step"],
        "trained_tokens": state["tokens"],
        "loss_curve": state["loss_curve"],
        "held_out_curve": state["held_out_curve"],
        "gradient_checkpointing": checkpointed,
        "load_s": round(load_s, 2),
        "train_s": round(state["train_s"], 2),
        "wall_s": round(wall_s, 2),
        "tokens_per_s": round(state["tokens"] / max(state["train_s"], 1e-9), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "versions": {p: version(p) for p in ("torch", "transformers", "peft", "gguf")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
