"""The fine-tuning use cases: train a LoRA adapter on the user's data and register it; merge an
adapter into its base as a standalone quantized model. Qt-free: the CLI and the window call these.

A run's files live in ``finetune/NAME/`` in the data folder (the adapter as written, its training
record, checkpoints while it runs), so a cancelled or crashed run resumes from there; a finished
adapter is imported into the adapter catalog (checked against its base, hashed) with its record
beside it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.desktop.errors import BastionError
from bastion.desktop.grounded_training import (
    GroundedData,
    GroundedOptions,
    build_grounded_data,
    reusable_grounded_data,
)
from bastion.desktop.paths import DataPaths
from bastion.models.adapter_catalog import AdapterCatalog, AdapterEntry
from bastion.models.adapter_import import import_adapter
from bastion.models.catalog import Catalog, embedded_default_model_path
from bastion.models.finetune_process import FinetuneProcess
from bastion.models.finetune_types import FinetuneConfig, FinetuneEvent, Finished
from bastion.models.lora_merge import QUANTIZATIONS, merge_adapter
from bastion.models.model_import import import_model

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RECORD_SUFFIX = ".training.json"


@dataclass(frozen=True)
class Registered:
    """The last event of a finished run: the adapter as it is now in the catalog."""

    adapter: AdapterEntry
    finished: Finished


def run_folder(paths: DataPaths, name: str) -> Path:
    return paths.home / "finetune" / name


def base_model_path(paths: DataPaths, base: str | None) -> Path:
    """The base model file: a catalog id, file name or path; None = the embedded default."""
    if not base:
        return embedded_default_model_path()
    candidate = Path(base).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    return Catalog(paths.models_dir).resolve(base).path


def finetune_config(paths: DataPaths, name: str, data: Path, base: str | None = None,
                    **settings: Any) -> FinetuneConfig:
    """The run's configuration; ``settings`` are ``FinetuneConfig`` fields (rank, epochs, …).

    Raises:
        BastionError: the name cannot be a file name, the data file is missing, or an adapter
            by that name exists already.
    """
    if not NAME.match(name):
        raise BastionError(f"{name!r} cannot name an adapter: use letters, digits, '.', '_' or '-' "
                           "(up to 64), starting with a letter or digit.")
    if not data.is_file():
        raise BastionError(f"There is no training data file {data}.")
    if any(entry.id == name for entry in AdapterCatalog(paths.adapters_dir).entries()):
        raise BastionError(f"An adapter named {name!r} exists already: choose another name, or "
                           f"remove it first (`bastion adapters remove {name}`).")
    folder = run_folder(paths, name)
    base_path = base_model_path(paths, base)
    # The catalog's cached hash (valid while the file keeps its size and mtime) spares the
    # training process re-reading the whole base.
    settings.setdefault("base_sha256", Catalog(paths.models_dir).hash_cache.cached(base_path))
    return FinetuneConfig(
        base=base_path, data=data.resolve(), output=folder / f"{name}.gguf",
        work_dir=folder / "work", name=name, cache_dir=paths.home / "cache" / "dequantized",
        **settings)


def grounded_data(paths: DataPaths, name: str, questions: Path, collections: Sequence[str],
                  options: GroundedOptions | None = None,
                  progress: Callable[[int, int], None] | None = None, *,
                  reuse: bool = False) -> GroundedData:
    """Build the grounded training data of run ``name`` from a question set and collections.

    Written to ``finetune/NAME/grounded.jsonl``; a resumed run whose question set is unchanged
    reuses it (``reuse``), so its examples (and the checkpoint's data order) stay the same.

    Raises:
        BastionError: the name is invalid, a collection is unknown or empty, or the question set
            cannot be read (the line and reason are named).
    """
    from bastion.desktop.lab.questions import load_questions
    from bastion.desktop.library import open_library
    from bastion.desktop.settings import Settings

    if not NAME.match(name):
        raise BastionError(f"{name!r} cannot name an adapter: use letters, digits, '.', '_' or '-'.")
    question_set = load_questions(questions)
    if not collections:
        raise BastionError("Grounded training needs a collection to retrieve passages from "
                           "(--collection NAME).")
    options = options or GroundedOptions()
    out = run_folder(paths, name) / "grounded.jsonl"
    if reuse and (previous := reusable_grounded_data(out, question_set.sha256, options)):
        return previous
    with open_library(paths) as library:
        known = {c.name for c in library.collections()}
        for collection in collections:
            if collection not in known:
                raise BastionError(f"There is no collection {collection!r}: "
                                   f"{', '.join(sorted(known)) or 'none exists yet'}.")
        system_prompt = Settings.load(paths.settings_file).system_prompt
        return build_grounded_data(
            question_set, lambda q: library.search(q, list(collections), options.k), out,
            system_prompt=system_prompt, options=options, progress=progress)


def train(paths: DataPaths, config: FinetuneConfig,
          process: FinetuneProcess | None = None) -> Generator[FinetuneEvent | Registered, None, None]:
    """Run the training (in its own process) and register the adapter it writes.

    Yields the run's events as they come (progress, loss, checkpoints), then ``Registered``.
    Closing the iterator cancels the run; its checkpoint is kept for ``resume``.
    """
    config.output.parent.mkdir(parents=True, exist_ok=True)
    with process or FinetuneProcess(config) as run:
        finished: Finished | None = None
        for event in run.events():
            yield event
            if isinstance(event, Finished):
                finished = event
    if finished is None:
        return  # cancelled: nothing is registered
    entry = import_adapter(Path(finished.adapter), paths.adapters_dir, Catalog(paths.models_dir),
                           base=str(config.base), name=config.name)
    record = Path(finished.record)
    if record.is_file():
        shutil.copy2(record, entry.path.with_name(entry.path.stem + RECORD_SUFFIX))
    yield Registered(entry, finished)


def merge(paths: DataPaths, adapter: str, *, scale: float = 1.0, quantization: str = "Q8_0",
          model_name: str | None = None, base: str | None = None) -> Path:
    """Merge ``adapter`` into its base and import the result as a model; its path.

    The base is the one the adapter was checked against at import (``base`` overrides it).
    """
    if quantization not in QUANTIZATIONS:
        raise BastionError(f"Unknown quantization {quantization!r}: choose one of "
                           f"{', '.join(QUANTIZATIONS)}.")
    entry = AdapterCatalog(paths.adapters_dir).resolve(adapter)
    base_path = base_model_path(paths, base or (entry.base.model if entry.base else None))
    name = model_name or f"{base_path.stem.split('.')[0]}-{entry.id}.{quantization}"
    if not NAME.match(name):
        raise BastionError(f"{name!r} cannot name a model file; choose another with --as.")
    staging = run_folder(paths, entry.id) / f"{name}.gguf"
    merge_adapter(base_path, entry.path, staging, scale=scale, quantization=quantization)
    try:
        imported = import_model(staging, paths.models_dir)
    finally:
        staging.unlink(missing_ok=True)
    return imported.path


def describe(event: object) -> str:
    """One line per training event, for the terminal."""
    from bastion.models import finetune_types as t

    if isinstance(event, t.Loading):
        return f"{event.stage}{': ' + event.detail if event.detail else ''}"
    if isinstance(event, t.Prepared):
        return (f"{event.train_examples} training and {event.held_out_examples} held-out examples"
                + (f" ({event.too_long_examples} too long, left out)" if event.too_long_examples else "")
                + f"; {event.total_steps} steps" + (f", resuming at {event.start_step}" if event.start_step else "")
                + f"; {event.trainable_parameters:,} trainable parameters")
    if isinstance(event, t.StepDone):
        return (f"step {event.step}/{event.total_steps} · loss {event.loss:.3f} · "
                f"{event.tokens_per_s:.0f} tokens/s · ETA {_duration(event.eta_s)} · "
                f"peak RSS {event.peak_rss_mb / 1024:.1f} GB")
    if isinstance(event, t.Evaluated):
        return f"held-out loss {event.held_out_loss:.3f} at step {event.step}"
    if isinstance(event, t.CheckpointSaved):
        return f"checkpoint at step {event.step}"
    if isinstance(event, t.Cancelled):
        return f"cancelled at step {event.step}; checkpoint kept: {event.checkpoint or 'none'}"
    if isinstance(event, t.Finished):
        return (f"done: {event.steps} steps in {_duration(event.wall_s)}, final loss {event.final_loss:.3f}"
                + (f", held-out {event.held_out_loss:.3f}" if event.held_out_loss is not None else "")
                + f", peak RSS {event.peak_rss_mb / 1024:.1f} GB, adapter {event.adapter_bytes / 1e6:.1f} MB")
    if isinstance(event, Registered):
        return (f"registered the adapter {event.adapter.id}: "
                f"bastion ask \"…\" --adapter {event.adapter.id}")
    return str(event)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
