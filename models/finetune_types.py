"""Fine-tuning as plain data: the settings of a run, the events it yields, and its errors.

Nothing here imports torch or transformers: the application builds a ``FinetuneConfig``, checks a
base model up front (``check_base_model``) and reads events without loading the training stack.
Events cross the process boundary as JSON objects (``event_to_json`` / ``event_from_json``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ModelError
from .gguf_file import GGUFInfo, read_gguf_info
from .lora_gguf import LORA_TARGETS, WRITABLE_ARCHITECTURES, TensorType

# Architectures a run accepts: transformers 5.x loads all of these from GGUF (it dequantizes the
# weights), and our writer names and permutes their adapters correctly.
SUPPORTED_ARCHITECTURES = WRITABLE_ARCHITECTURES
RECORD_SUFFIX = ".training.json"


class FinetuneError(ModelError):
    """A fine-tuning run cannot start or continue; the message says what to do."""


class UnsupportedBaseModel(FinetuneError):
    """The base model's architecture cannot be fine-tuned here."""


class TrainingDataError(FinetuneError):
    """The training data is unusable; ``line`` is the first bad line of a JSONL file, if any."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


# Named sets of projections to adapt. llama.cpp runs four small extra operations per adapted
# projection and token, so fewer projections answer faster (bench/adapter_bench.py measures it).
TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(LORA_TARGETS),
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}


def parse_targets(text: str) -> tuple[str, ...]:
    """A named group ("all", "attention", "mlp") or comma-separated projection names.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if text in TARGET_GROUPS:
        return TARGET_GROUPS[text]
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in LORA_TARGETS]
    if unknown or not names:
        raise ValueError(f"{text!r} names no projections: give {', '.join(TARGET_GROUPS)} or "
                         f"some of {', '.join(LORA_TARGETS)}, separated by commas")
    return names

@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that defines a run (plain data; paths are absolute local files).

    Attributes:
        base: the base model's GGUF file.
        data: chat-format JSONL (see ``finetune_data``), already validated or not.
        output: the adapter ``.gguf`` to write; the record goes beside it (``.training.json``).
        work_dir: where checkpoints live while training (kept on cancel, removed on success).
        name: the adapter's name (its ``general.name``).
        rank: LoRA rank r.
        alpha: LoRA alpha; the update is scaled by alpha / rank, in PEFT and in llama.cpp.
        dropout: LoRA dropout.
        targets: projections adapted, Hugging Face names: by default the four attention
            projections, which on SmolLM2-135M learnt 47 of 50 new facts against 49 with all
            seven and answer at ~0.93× the base's speed against ~0.87× (README, "Fine-tuning
            on this machine"); ``TARGET_GROUPS["all"]`` learns most.
        learning_rate: peak AdamW learning rate (warm-up, then cosine decay to a tenth).
        warmup_steps: steps of linear warm-up.
        weight_decay: AdamW weight decay on the LoRA factors.
        max_grad_norm: gradient clipping (0 disables it).
        epochs: passes over the training examples.
        max_steps: stop after this many optimizer steps (None: run all epochs).
        batch_tokens: tokens per step, padding included: several short examples or one long one.
            On CPU a token costs about the same in a small step as in a big one, and memory
            grows with the step, so steps are kept small.
        max_batch_examples: at most this many examples per step.
        max_seq_tokens: examples longer than this are left out (and counted), never truncated:
            cutting a grounded example would cut its question and answer.
        held_out_fraction: share of the examples kept out of training to measure loss on.
        max_held_out: at most this many held-out examples (each evaluation costs a forward pass).
        eval_every: steps between held-out evaluations (also at the end).
        checkpoint_every: steps between checkpoints.
        seed: data order, split and LoRA initialisation.
        n_threads: torch threads (None: all cores).
        gradient_checkpointing: recompute activations in the backward pass: "on" for every
            layer (one more forward pass, ~1.5× the time); "auto" for as few layers as the steps
            whose activations would not fit ``activation_budget_mb`` need (long grounded
            examples), none for short steps.
        activation_budget_mb: memory allowed for one step's activations (see "auto"); about
            2.6 MB per token for SmolLM2-135M.
        loss_chunk_tokens: the 49k-word output layer is applied to this many answer tokens at a
            time, and recomputed in the backward pass, so its logits never fill memory.
        tensor_type: the adapter's tensor type ("f32" exact, "f16" half the size).
        resume: continue from the checkpoint in ``work_dir`` (it must match these settings).
        base_sha256: the base file's SHA-256 if already known (the catalog caches it).
        cache_dir: where the dequantized base is kept (safetensors, by the base's SHA-256) so the
            next run on it loads in a second instead of half a minute; None: no cache.
    """

    base: Path
    data: Path
    output: Path
    work_dir: Path
    name: str = "adapter"
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = TARGET_GROUPS["attention"]
    learning_rate: float = 5e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: int = 3
    max_steps: int | None = None
    batch_tokens: int = 512
    max_batch_examples: int = 16
    max_seq_tokens: int = 1024
    held_out_fraction: float = 0.1
    max_held_out: int = 64
    eval_every: int = 50
    checkpoint_every: int = 50
    seed: int = 0
    n_threads: int | None = None
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    activation_budget_mb: int = 1024
    loss_chunk_tokens: int = 1024
    tensor_type: TensorType = "f32"
    resume: bool = False
    base_sha256: str | None = None
    cache_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else (
                list(value) if isinstance(value, tuple) else value)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FinetuneConfig:
        """The inverse of ``to_json``; unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise FinetuneError(f"Unknown fine-tuning settings: {', '.join(sorted(unknown))}.")
        values = dict(data)
        for key in ("base", "data", "output", "work_dir", "cache_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if "targets" in values:
            values["targets"] = tuple(values["targets"])
        return cls(**values)

    def check(self) -> None:
        """Refuse settings that cannot work, with the reason."""
        problems = []
        if not 1 <= self.rank <= 256:
            problems.append("rank must be between 1 and 256")
        if self.alpha <= 0:
            problems.append("alpha must be positive")
        if not 0 <= self.dropout < 1:
            problems.append("dropout must be in [0, 1)")
        bad_targets = [t for t in self.targets if t not in LORA_TARGETS]
        if bad_targets or not self.targets:
            problems.append(f"targets must be among {', '.join(LORA_TARGETS)}")
        if not 0 < self.learning_rate < 1:
            problems.append("the learning rate must be in (0, 1)")
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            problems.append("epochs and max_steps must be at least 1")
        if self.max_seq_tokens < 16 or self.batch_tokens < 16:
            problems.append("batch_tokens and max_seq_tokens must be at least 16")
        if not 0 <= self.held_out_fraction < 0.5:
            problems.append("held_out_fraction must be in [0, 0.5)")
        if min(self.eval_every, self.checkpoint_every, self.max_batch_examples,
               self.loss_chunk_tokens) < 1:
            problems.append("eval_every, checkpoint_every, max_batch_examples and "
                            "loss_chunk_tokens must be at least 1")
        if problems:
            raise FinetuneError("These fine-tuning settings cannot work: " + "; ".join(problems) + ".")

    @property
    def record_path(self) -> Path:
        """The training record written beside the adapter."""
        return self.output.with_name(self.output.stem + RECORD_SUFFIX)


def default_work_dir(output: Path) -> Path:
    """Where a run's checkpoints go by default: a hidden folder beside the adapter."""
    return output.with_name(f".{output.stem}.checkpoints")


def check_base_model(path: Path) -> GGUFInfo:
    """Validate a base model's header and refuse architectures a run cannot train.

    Cheap (header only): call it before starting a training process.

    Raises:
        InvalidModelFile: not a usable GGUF.
        UnsupportedBaseModel: an adapter, an embedding model, or another architecture.
    """
    info = read_gguf_info(path)
    arch = info.architecture or "unknown"
    if info.metadata.get("general.type") == "adapter":
        raise UnsupportedBaseModel(f"{path.name} is a LoRA adapter, not a base model.")
    if info.is_embedding_model or arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedBaseModel(
            f"{path.name} is a {arch!r} model; Bastion can fine-tune "
            f"{', '.join(sorted(SUPPORTED_ARCHITECTURES))} models (Llama, SmolLM, Mistral, Qwen 2 "
            "and 3 families). Choose a base model of one of these."
        )
    return info


# -- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loading:
    """Work before the first step: ``stage`` is "hashing", "model", "data" or "checkpoint"."""

    stage: str
    detail: str = ""


@dataclass(frozen=True)
class Prepared:
    """The run is ready: what it will train on and for how long."""

    train_examples: int
    held_out_examples: int
    too_long_examples: int  # left out: longer than max_seq_tokens
    total_steps: int
    start_step: int  # > 0 when resumed
    trainable_parameters: int
    gradient_checkpointing: bool
    load_s: float


@dataclass(frozen=True)
class StepDone:
    """One optimizer step finished."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    learning_rate: float
    tokens: int  # tokens in the step, padding excluded
    tokens_per_s: float  # training throughput over the run so far
    s_per_step: float  # recent average
    eta_s: float
    peak_rss_mb: float


@dataclass(frozen=True)
class Evaluated:
    """Loss on the held-out examples."""

    step: int
    held_out_loss: float


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str


@dataclass(frozen=True)
class Cancelled:
    """The run stopped on request; ``checkpoint`` (if any) resumes it."""

    step: int
    checkpoint: str | None


@dataclass(frozen=True)
class Finished:
    """The adapter and its record are written."""

    adapter: str
    record: str
    steps: int
    final_loss: float
    held_out_loss: float | None
    wall_s: float
    peak_rss_mb: float
    adapter_bytes: int
    record_data: dict[str, Any] = field(default_factory=dict, compare=False)


FinetuneEvent = Loading | Prepared | StepDone | Evaluated | CheckpointSaved | Cancelled | Finished
_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (Loading, Prepared, StepDone, Evaluated, CheckpointSaved, Cancelled, Finished)
}


def event_to_json(event: FinetuneEvent) -> dict[str, Any]:
    """An event as a JSON object with a "type" key."""
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def event_from_json(data: dict[str, Any]) -> FinetuneEvent:
    """Rebuild an event from ``event_to_json``'s output, checking its type and fields."""
    cls = _EVENT_TYPES.get(str(data.get("type")))
    if cls is None:
        raise FinetuneError(f"The training process sent an unknown event {data.get('type')!r}.")
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in data.items() if k != "type"}
    if set(fields) - names:
        raise FinetuneError(f"The training process sent a malformed {cls.__name__} event.")
    try:
        event: FinetuneEvent = cls(**fields)
    except TypeError as error:
        raise FinetuneError(f"The training process sent a malformed {cls.__name__} event.") from error
    return event
