"""Fine-tuning jobs for the window's fine-tune thread, and the page's plain-data helpers.

Like ``core_tasks``: each job takes ``(paths, job)`` first (the fine-tune thread's context is the
``DataPaths``), runs off the GUI thread over the same use cases as ``bastion finetune``
(``desktop.finetuning``), imports no Qt and hands back plain records. The training itself runs in
its own process; this thread only waits for its events, so a run of hours never holds the GUI.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.desktop import finetuning
from bastion.desktop.finetuning import describe
from bastion.desktop.gui.core_tasks import JobLike
from bastion.desktop.paths import DataPaths
from bastion.models.catalog import ModelEntry
from bastion.models.finetune_checkpoint import CURRENT, PREVIOUS
from bastion.models.finetune_types import (
    SUPPORTED_ARCHITECTURES,
    Evaluated,
    FinetuneConfig,
    Prepared,
    StepDone,
)

# finetuning.train(paths, config, process) and the FinetuneProcess it reads events from.
TrainFunction = Callable[[DataPaths, FinetuneConfig, Any], Iterator[Any]]
ProcessFactory = Callable[[FinetuneConfig], Any]
MergeFunction = Callable[..., Path]

# The form's defaults are the use case's own, so the window and the CLI train alike.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}


@dataclass(frozen=True)
class RunRequest:
    """What the form asks for; ``base`` is a model path or None for the embedded model."""

    name: str
    data: Path
    base: str | None = None
    epochs: int = DEFAULTS["epochs"]
    rank: int = DEFAULTS["rank"]
    learning_rate: float = DEFAULTS["learning_rate"]
    max_steps: int | None = None
    resume: bool = False
    targets: tuple[str, ...] = DEFAULTS["targets"]
    # Grounded training: ``data`` is a question set and passages come from this collection.
    collection: str | None = None


@dataclass(frozen=True)
class CheckedRun:
    """The data file read and every line valid; the run's configuration; when it resumes, the
    loss curve so far; for grounded training, what the examples were built from."""

    config: FinetuneConfig
    examples: int
    history: LossHistory
    grounded: str | None = None  # GroundedData.summary()


def check_run(paths: DataPaths, job: JobLike, request: RunRequest) -> CheckedRun:
    """Read every line of the data (the first bad one is reported before anything loads), check
    the name and the base model's architecture, and build the run's configuration.

    Raises:
        TrainingDataError: a bad line (its number in ``line``) or an empty file.
        BastionError, UnsupportedBaseModel, InvalidModelFile: what the message says.
    """
    from bastion.models.finetune_data import read_chat_jsonl
    from bastion.models.finetune_types import check_base_model

    config = finetuning.finetune_config(
        paths, request.name, request.data, request.base, epochs=request.epochs,
        rank=request.rank, learning_rate=request.learning_rate, max_steps=request.max_steps,
        targets=request.targets, resume=request.resume)
    config.check()
    check_base_model(config.base)
    summary = None
    if request.collection:  # retrieval loads the embedder: seconds, on this worker
        built = finetuning.grounded_data(paths, request.name, request.data, [request.collection],
                                         reuse=request.resume)
        config = dataclasses.replace(config, data=built.path.resolve())
        examples, summary = built.examples, built.summary()
    else:
        examples = len(read_chat_jsonl(request.data))
    history = checkpoint_history(paths, config.name) if config.resume else LossHistory()
    return CheckedRun(config, examples, history, summary)


def run_training(paths: DataPaths, job: JobLike, config: FinetuneConfig, train: TrainFunction,
                 process: ProcessFactory) -> Iterator[Any]:
    """Yield the run's events, then ``Registered`` once the adapter is in the catalog.

    Cancel goes straight to the training process (the job's canceller): it stops within a second
    at its next layer, saves a checkpoint, says ``Cancelled``, and the events end by themselves.
    Closing the events instead would only act at the next event, a whole step later (half a
    minute on a busy machine), and a run that finished meanwhile would be left unregistered.
    """
    run = process(config)
    job.set_canceller(run.cancel)
    yield from train(paths, config, run)


def merge_adapter(paths: DataPaths, job: JobLike, adapter: str, merge: MergeFunction,
                  scale: float = 1.0, quantization: str = "Q8_0",
                  model_name: str | None = None) -> Path:
    """Merge ``adapter`` into its base as a quantized model in the catalog; its path."""
    return merge(paths, adapter, scale=scale, quantization=quantization, model_name=model_name)


def _checkpoint_state(paths: DataPaths, name: str) -> Path | None:
    # Where load_checkpoint looks: the current checkpoint, else the one a crash mid-swap kept.
    if not finetuning.NAME.match(name):
        return None
    work = finetuning.run_folder(paths, name) / "work"
    return next((state for folder in (CURRENT, PREVIOUS)
                 if (state := work / folder / "state.json").is_file()), None)


def has_checkpoint(paths: DataPaths, name: str) -> bool:
    """Whether a cancelled or crashed run called ``name`` left a checkpoint to resume."""
    return _checkpoint_state(paths, name) is not None


def checkpoint_history(paths: DataPaths, name: str) -> LossHistory:
    """The loss curve up to the checkpoint a resumed run starts from, so the page shows the
    whole run (empty if there is none or it cannot be read: the run itself says why)."""
    history = LossHistory()
    state_file = _checkpoint_state(paths, name)
    try:
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file else {}
        for step, loss in state.get("loss_curve", []):
            history.steps.append(int(step))
            history.losses.append(float(loss))
        for step, loss in state.get("held_out_curve", []):
            history.held_out_steps.append(int(step))
            history.held_out_losses.append(float(loss))
    except (OSError, ValueError, TypeError, AttributeError):
        return LossHistory()
    return history


def run_outcome(adapter: str | None, step: int, *, failed: bool, checkpoint: bool) -> str:
    """What the page says when a run ends: the adapter ready, or where a stopped run stands."""
    if adapter is not None:
        return (f"The adapter {adapter} is ready: choose it for a chat in the chat header, or "
                "merge it into a model of its own.")
    said = "The training stopped with an error" if failed else "Stopped"
    said += f" after step {step}." if step else "."
    if checkpoint:
        return said + " The checkpoint is kept: tick Resume and Start to continue."
    return said if failed else said + " No checkpoint was saved yet."


def trainable_models(entries: Iterable[ModelEntry]) -> list[ModelEntry]:
    """The models a run can use as its base (usable, of an architecture the trainer supports)."""
    return [e for e in entries
            if e.info is not None and not e.error and not e.info.is_embedding_model
            and e.info.architecture in SUPPORTED_ARCHITECTURES]


@dataclass
class LossHistory:
    """The loss curve of the run on screen: training loss per step, held-out loss points."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    held_out_steps: list[int] = field(default_factory=list)
    held_out_losses: list[float] = field(default_factory=list)
    total_steps: int | None = None
    last: StepDone | None = None

    def add(self, event: object) -> bool:
        """Take in an event; True if the curve changed."""
        if isinstance(event, Prepared):
            self.total_steps = event.total_steps
            return False
        if isinstance(event, StepDone):
            self.total_steps = event.total_steps
            self.last = event
            self.steps.append(event.step)
            self.losses.append(event.loss)
            return True
        if isinstance(event, Evaluated):
            self.held_out_steps.append(event.step)
            self.held_out_losses.append(event.held_out_loss)
            return True
        return False

    @property
    def last_step(self) -> int:
        return self.steps[-1] if self.steps else 0

    @property
    def last_held_out(self) -> float | None:
        return self.held_out_losses[-1] if self.held_out_losses else None

    def status_line(self) -> str:
        """Step, loss, speed, ETA and peak RSS of the last step (the CLI's line), and the last
        held-out loss."""
        if self.last is None:
            return ""
        line: str = describe(self.last)
        held_out = self.last_held_out
        if held_out is not None:
            line += f" · held-out loss {held_out:.3f}"
        return line[:1].upper() + line[1:]
