"""The freshness experiment: change some facts in a copy of the documents and measure which
routes follow the change, and how long each takes to reflect one.

``bastion lab freshness`` drives ``run_freshness``:

1. the collection's indexed files are copied to a scratch folder inside the run folder (the
   user's folder is only read) and indexed as a scratch collection — that build is timed;
2. a share of the answerable questions get their gold fact changed in the copy
   (``fact_changes``), and the scratch collection is synced again — that re-sync is timed: it is
   the "time to reflect a change" of the documents routes;
3. the changed questions are asked again, with the new values as gold answers, by the base model
   alone and with documents (and with each adapter given): a lab run like any other, in the same
   run folder, with ``freshness.json`` beside it for the report's freshness section.

The scratch collection and folder are removed at the end, however the run ends (finished,
stopped, cancelled, or failed); a run killed outright leaves them for the next run to remove.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.desktop.app import App
from bastion.desktop.errors import BastionError
from bastion.desktop.lab.costs import collection_costs, training_seconds
from bastion.desktop.lab.fact_changes import ChangePlan, FactChange, apply_changes, plan_changes
from bastion.desktop.lab.freshness_history import change_history
from bastion.desktop.lab.freshness_report import FRESHNESS_FILE
from bastion.desktop.lab.questions import QuestionSet, load_questions
from bastion.desktop.lab.run_folder import RunFolder
from bastion.desktop.lab.session import (
    DEFAULT_MAX_TOKENS,
    LabChecked,
    LabRequest,
    run_session,
)
from bastion.models.adapter_catalog import AdapterCatalog
from bastion.store.errors import StoreError
from bastion.store.parsers.fsread import open_regular_file, read_bytes

SCRATCH_FOLDER = "scratch"
SCRATCH_PREFIX = "lab-freshness-"
# The mtime of a changed copy moves this far, so the re-sync sees it even on a coarse clock.
_MTIME_STEP_NS = 2_000_000_000


@dataclass(frozen=True)
class FreshnessRequest:
    """What the user asked for (``bastion lab freshness``'s arguments)."""

    questions: Path
    collection: str
    adapters: Sequence[tuple[str, float]] = ()
    fraction: float = 0.3
    seed: int = 0
    model: str | None = None
    out: Path | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS


@dataclass(frozen=True)
class FreshnessPlanned:
    """The facts to change are chosen; the copy is being made and indexed next."""

    plan: ChangePlan
    documents: int  # files copied
    folder: Path


@dataclass(frozen=True)
class FreshnessIndexed:
    """The copy is indexed (``build_s``) and, once changed, synced again (``resync_s``)."""

    build_s: float
    resync_s: float
    changed_files: int


def default_out(questions: Path) -> Path:
    """``lab-freshness-<question set name>`` in the current folder."""
    return Path.cwd() / f"lab-freshness-{questions.stem}"


def scratch_name(collection: str) -> str:
    """The scratch collection's name: fixed per collection, so a run killed outright leaves one
    that the next run removes."""
    return f"{SCRATCH_PREFIX}{collection}"


def read_text(path: str, max_bytes: int) -> str | None:
    """A file's text if it is plain UTF-8 text, read safely (no link followed, bounded)."""
    try:
        fd, info = open_regular_file(Path(path), max_bytes)
    except (StoreError, OSError):  # skipped, vanished, refused: not a file we can edit
        return None
    try:
        data = read_bytes(fd, info.st_size, max_bytes).data
    except (StoreError, OSError):
        return None
    finally:
        os.close(fd)
    if b"\0" in data:
        return None
    try:
        text: str = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text


def copy_documents(paths: Sequence[str], roots: Sequence[str], dest: Path,
                   max_bytes: int) -> dict[str, Path]:
    """Copy each file under its root's own folder in ``dest`` (``dest/1/…``, ``dest/2/…``),
    keeping relative paths; files that cannot be read safely are left out."""
    copies: dict[str, Path] = {}
    ordered = sorted(enumerate(roots, start=1), key=lambda r: -len(r[1]))
    for path in paths:
        found = next(((i, r) for i, r in ordered if Path(path).is_relative_to(r)), None)
        if found is None:
            continue
        target = dest / str(found[0]) / Path(path).relative_to(found[1])
        try:
            fd, info = open_regular_file(Path(path), max_bytes)
        except (StoreError, OSError):  # gone or refused since it was indexed
            continue
        try:
            data = read_bytes(fd, info.st_size, max_bytes).data
        finally:
            os.close(fd)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o600)
        copies[path] = target
    return copies


def _sync(library: Any, name: str, should_stop: Callable[[], bool]) -> tuple[float, bool]:
    """Sync collection ``name``; the seconds it took and whether it was stopped."""
    started = time.perf_counter()
    cancelled = False
    sync = library.sync(name, cancel=should_stop)
    try:
        for event in sync:
            cancelled = cancelled or event.cancelled
    finally:
        # Closed here, not whenever an exception's traceback lets go of it: the scratch
        # collection is removed next, and its sync must have stopped by then.
        sync.close()
    return time.perf_counter() - started, cancelled or should_stop()


def _remove_scratch(library: Any, name: str, folder: Path) -> None:
    if any(c.name == name for c in library.collections()):
        library.remove_collection(name)
    shutil.rmtree(folder, ignore_errors=True)


def _changed_questions(questions: QuestionSet, changes: Sequence[FactChange], copies: dict[str, Path],
                       scratch: Path, path: Path) -> None:
    by_id = {q.id: q for q in questions.questions}
    lines = []
    for change in changes:
        q = by_id[change.question_id]
        lines.append({"id": q.id, "question": q.question, "answers": [change.new],
                      "old_answers": [change.old],
                      "source": str(copies[change.path].relative_to(scratch))})
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                    encoding="utf-8")


def run_freshness(app: App, request: FreshnessRequest,
                  should_stop: Callable[[], bool] | None = None) -> Iterator[object]:
    """Change facts in a copy, time its index build and re-sync, and ask the changed questions.

    A generator: ``FreshnessPlanned``, ``FreshnessIndexed``, then the lab run's events
    (``SessionEvent``: ``LabChecked`` … ``LabReported``). ``should_stop`` stops a sync or an answer early; closing the
    generator stops too; either way the scratch collection and folder are removed.

    Raises:
        BastionError: the options, the question set or the collection are not usable, or no
            question has a fact that can be changed (the message says why for each).
        StoreError: there is no such collection.
    """
    stop = should_stop or (lambda: False)
    if not 0 < request.fraction <= 1:
        raise BastionError("--fraction must be more than 0 and at most 1 (e.g. 0.3 for 30%).")
    questions = load_questions(request.questions)
    library = app.library
    collection_costs(library, request.collection)  # refuses an empty collection
    info = library.collection(request.collection)
    max_bytes = library.max_file_bytes
    paths = [d.path for d in library.documents(request.collection, ["indexed"])]
    wanted = {p for q in questions.questions if q.source for p in paths
              if Path(p).name == Path(q.source).name}
    texts = {p: (read_text(p, max_bytes) if p in wanted else None) for p in paths}
    plan = plan_changes(questions.questions, texts, request.fraction, request.seed)
    if not plan.changes and not paths:
        raise BastionError(f"The collection {request.collection!r} has no indexed files to copy.")
    if not plan.changes:
        why = "; ".join(f"{n} {reason}" for reason, n in plan.passed_over.items()) or "no questions"
        raise BastionError(
            f"No fact of {request.questions.name} can be changed in {request.collection!r} ({why}). "
            "A question needs a \"source\" file of the collection, in plain text, that writes its "
            "gold answer — a number or a name — word for word.")
    catalog = AdapterCatalog(app.paths.adapters_dir)
    retrain = {name: training_seconds(catalog.resolve(name).path) for name, _ in request.adapters}
    history = change_history(library, request.collection)

    out = request.out or default_out(request.questions)
    scratch = out / SCRATCH_FOLDER
    name = scratch_name(request.collection)
    _remove_scratch(library, name, scratch)  # left by a run that was killed
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch.mkdir(mode=0o700)
        copies = copy_documents(paths, info.roots, scratch / "documents", max_bytes)
        yield FreshnessPlanned(plan, len(copies), out)
        roots = sorted(str(d) for d in (scratch / "documents").iterdir())
        library.add_collection(name, roots, Path(info.embedder_folder) if info.embedder_folder else None)
        build_s, stopped = _sync(library, name, stop)
        if stopped:
            return
        changed = _change_copies(plan.changes, copies)
        resync_s, stopped = _sync(library, name, stop)
        if stopped:
            return
        yield FreshnessIndexed(build_s, resync_s, len(changed))
        changed_file = scratch / f"{request.questions.stem}-changed.jsonl"
        _changed_questions(questions, plan.changes, copies, scratch / "documents", changed_file)
        record = {"collection": request.collection, "scratch_collection": name,
                  "questions_file": str(request.questions.resolve()), "fraction": request.fraction,
                  "seed": request.seed, "candidates": plan.candidates,
                  "passed_over": plan.passed_over, "changes": [c.to_json() for c in plan.changes],
                  "documents_copied": len(copies), "changed_files": len(changed),
                  "build_s": round(build_s, 3), "resync_s": round(resync_s, 3),
                  "retrain_s": retrain, "history": history}
        lab = LabRequest(questions=changed_file, collection=name, adapters=request.adapters,
                         model=request.model, out=out, modes=("model", "docs"),
                         max_tokens=request.max_tokens, seed=request.seed)
        for event in run_session(app, lab, stop):
            if isinstance(event, LabChecked):
                folder = RunFolder(event.folder)
                _write_json(folder.path / FRESHNESS_FILE, record)
                folder.save_costs({"collection": {**folder.info().costs.get("collection", {}),
                                                  "index_build_s": round(build_s, 3)}})
            yield event
    finally:
        _remove_scratch(library, name, scratch)


def _change_copies(changes: Sequence[FactChange], copies: dict[str, Path]) -> list[Path]:
    """Apply the changes to the copied files; the files changed."""
    by_file: dict[str, list[FactChange]] = {}
    for change in changes:
        by_file.setdefault(change.path, []).append(change)
    changed = []
    for path, mine in by_file.items():
        target = copies[path]
        before = target.stat()
        target.write_text(apply_changes(target.read_text(encoding="utf-8"), mine), encoding="utf-8")
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + _MTIME_STEP_NS))
        changed.append(target)
    return changed


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
