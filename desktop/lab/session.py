"""A lab run on the user's app: inputs checked before any model loads, then run and reported.

The CLI (``bastion lab run``) drives ``run_session``; a window would too. Bad input — a broken
question set, an unknown or empty collection, an unknown adapter, a run folder holding another
experiment — is refused before the model loads; an adapter that does not fit the model is
refused right after it loads, before the first question.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.desktop.app import App, resolve_model_path
from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import MODES, Mode
from bastion.desktop.lab.arms import Arm, make_arms
from bastion.desktop.lab.costs import adapter_costs, collection_costs, engine_rss_mb
from bastion.desktop.lab.questions import QuestionSet, load_questions
from bastion.desktop.lab.report import ReportFiles, write_reports
from bastion.desktop.lab.run_folder import RunFolder, RunInfo, pick_run_folder
from bastion.desktop.lab.runner import LabEvent, LabParts, LabPlan, greedy, run_lab
from bastion.models.adapter_catalog import AdapterCatalog

DEFAULT_MAX_TOKENS = 128


@dataclass(frozen=True)
class LabRequest:
    """What the user asked for (``bastion lab run``'s arguments)."""

    questions: Path
    collection: str | None = None
    adapters: Sequence[tuple[str, float]] = ()
    model: str | None = None
    limit: int | None = None
    out: Path | None = None
    modes: Sequence[Mode] = MODES
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int = 0
    # Without ``out``: the run's folder is picked under ``runs_dir`` (the window's runs live in
    # the data folder), else ``default_out``.
    runs_dir: Path | None = None


@dataclass(frozen=True)
class LabChecked:
    """The inputs passed their checks; the model loads next."""

    folder: Path
    questions: int
    arms: list[Arm]
    model_file: Path
    resumed: bool


@dataclass(frozen=True)
class LabReported:
    """The report files are written."""

    files: ReportFiles


SessionEvent = LabChecked | LabEvent | LabReported


@dataclass
class _Checked:
    questions: QuestionSet
    arms: list[Arm]
    model_file: Path
    costs: dict[str, Any] = field(default_factory=dict)


def default_out(questions: Path) -> Path:
    """``lab-<question set name>`` in the current folder: the same command continues the run."""
    return Path.cwd() / f"lab-{questions.stem}"


def check_inputs(app: App, request: LabRequest) -> _Checked:
    """Everything that can be checked without loading the model.

    Raises:
        BastionError: the question set, the collection, an adapter or the options are not usable.
        StoreError: the collection does not exist (its message lists those that do).
    """
    if request.limit is not None and request.limit < 1:
        raise BastionError("--limit must be at least 1.")
    if request.max_tokens < 1:
        raise BastionError("--max-tokens must be at least 1.")
    questions = load_questions(request.questions)
    arms = make_arms(request.modes, request.adapters, with_documents=request.collection is not None)
    costs: dict[str, Any] = {}
    if request.collection is not None:
        costs["collection"] = collection_costs(app.library, request.collection)
    catalog = AdapterCatalog(app.paths.adapters_dir)
    adapters: dict[str, Any] = {}
    for name, _scale in request.adapters:
        entry = catalog.resolve(name)
        if not entry.usable:
            raise BastionError(entry.error or f"The adapter {name} is not usable.")
        adapters[name] = adapter_costs(entry)
    if adapters:
        costs["adapters"] = adapters
    model_file = resolve_model_path(request.model or app.settings.default_model, app.paths.models_dir)
    costs["model"] = {"file": str(model_file), "bytes": model_file.stat().st_size}
    return _Checked(questions, arms, model_file, costs)


def run_session(app: App, request: LabRequest,
                should_stop: Callable[[], bool] | None = None) -> Iterator[SessionEvent]:
    """Check the inputs, load the model, answer what the run folder still lacks, write the report.

    A generator: ``LabChecked``, then the runner's events (``LabStarted``, ``LabAnswered``…,
    ``LabFinished``), then ``LabReported``. Closing it stops after the answer in progress;
    ``should_stop`` (polled in this generator's thread, as ``run_lab`` does) stops sooner, in
    the middle of an answer, and the run still ends with ``LabFinished`` and its report.
    """
    checked = check_inputs(app, request)
    sampling = greedy(app.settings.sampling(), request.max_tokens, request.seed)
    info = RunInfo(
        questions_file=str(request.questions.resolve()), questions_sha256=checked.questions.sha256,
        collection=request.collection, model=checked.model_file.stem,
        model_file=str(checked.model_file), arms=checked.arms, sampling=sampling.to_dict(),
        system_prompt=app.settings.system_prompt, passage_sentences=app.settings.passage_sentences,
        limit=request.limit, costs=checked.costs,
        created=time.time())
    if request.out is None and request.runs_dir is not None:
        folder = pick_run_folder(request.runs_dir, request.questions.stem, info)
    else:
        folder = RunFolder(request.out or default_out(request.questions))
    resumed = folder.exists()
    folder.start(info, checked.questions)
    questions = checked.questions.questions[: request.limit]
    yield LabChecked(folder.path, len(questions), checked.arms, checked.model_file, resumed)

    engine = app.engine(str(checked.model_file))
    catalog = AdapterCatalog(app.paths.adapters_dir)
    adapter_path = functools.partial(catalog.path_of, base=engine.gguf_info)
    for name, _scale in request.adapters:
        adapter_path(name)  # a misfit is refused now, not at its first question
    folder.save_costs({"engine": {"rss_mb_after_load": engine_rss_mb(engine)}})
    parts = LabParts(engine=engine, retriever=app.library if request.collection else None,
                     sampling=sampling, system_prompt=app.settings.system_prompt,
                     adapter_path=adapter_path, policy=app.settings.retrieval_policy())
    yield from run_lab(LabPlan(questions, checked.arms, request.collection), parts, folder,
                       should_stop)
    yield LabReported(write_reports(folder, seed=request.seed))
