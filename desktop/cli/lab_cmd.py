"""``bastion lab run|freshness|questions-from-chats|report``: compare routes (model, documents,
adapters) on a question set, measure freshness, and make a question set from marked answers.

Thin: ``bastion.desktop.lab.session`` checks, runs and reports; this prints its events.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from bastion.desktop.cli.arg_types import positive_int, setting
from bastion.desktop.grounding import MODES


def register(subparsers: Any) -> None:
    """Add the ``lab`` command group."""
    from bastion.desktop.lab.session import DEFAULT_MAX_TOKENS

    lab = subparsers.add_parser("lab", help="compare model, documents and adapters on your questions")
    commands = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    run = commands.add_parser(
        "run", help="answer a question set by every route and write a report (resumable)",
        description="Answer every question of QUESTIONS (JSONL: question, answers, optional id, "
                    "source, unanswerable) with the base model alone, with documents, and with "
                    "each adapter, greedy and seeded; then write report.md, report.html, "
                    "answers.csv and answers.json into the run folder. Run the same command "
                    "again to continue a stopped run.")
    run.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    run.add_argument("--collection", metavar="NAME",
                     help="the document collection of the documents arms (without it: model arms only)")
    run.add_argument("--adapter", action="append", default=[], type=_adapter_spec,
                     metavar="NAME[:SCALE]",
                     help="also try this LoRA adapter, alone, in every mode (repeatable)")
    run.add_argument("--model", help="base model id, file name or path (default: the settings' default)")
    run.add_argument("--modes", type=_modes, default=MODES, metavar="MODES",
                     help="comma-separated modes to try (default: model,docs,both)")
    run.add_argument("--limit", type=positive_int, metavar="N", help="only the first N questions")
    run.add_argument("--max-tokens", type=setting("max_tokens"), default=DEFAULT_MAX_TOKENS, metavar="N",
                     help="longest answer in tokens (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default: 0)")
    run.add_argument("--out", type=Path, metavar="DIR",
                     help="run folder (default: lab-<question set name> here)")
    run.set_defaults(func=run_lab)

    fresh = commands.add_parser(
        "freshness", help="change facts in a copy of the documents and measure which routes follow",
        description="Copy the collection's documents to a scratch folder, change the gold answer "
                    "of a share of the questions in the copy (a number becomes another number, a "
                    "name another made-up name), index the copy (timed), and ask the changed "
                    "questions again with the new answers as gold, by the model alone and with "
                    "documents (and each adapter). The report says how often each route follows "
                    "the change and how long each takes to reflect one. Your folder and "
                    "collection are only read; the scratch copy is removed at the end.")
    fresh.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    fresh.add_argument("--collection", metavar="NAME", required=True,
                       help="the collection whose documents are copied and changed")
    fresh.add_argument("--adapter", action="append", default=[], type=_adapter_spec,
                       metavar="NAME[:SCALE]", help="also try this LoRA adapter (repeatable)")
    fresh.add_argument("--fraction", type=_fraction, default=0.3, metavar="F",
                       help="share of the changeable questions to change (default: %(default)s)")
    fresh.add_argument("--model", help="base model id, file name or path (default: the settings' default)")
    fresh.add_argument("--max-tokens", type=setting("max_tokens"), default=DEFAULT_MAX_TOKENS,
                       metavar="N", help="longest answer in tokens (default: %(default)s)")
    fresh.add_argument("--seed", type=int, default=0,
                       help="seed of the changes, the sampling and the bootstrap (default: 0)")
    fresh.add_argument("--out", type=Path, metavar="DIR",
                       help="run folder (default: lab-freshness-<question set name> here)")
    fresh.set_defaults(func=run_freshness)

    marked = commands.add_parser(
        "questions-from-chats", help="make a question set from the answers you marked good",
        description="Write a lab question set (JSONL) from the chat answers marked \"✓ good "
                    "answer\" in the window: the question before each, the answer as its gold "
                    "answer (without citation markers) and its first cited file as the source. "
                    "The gold answers are whole answers, so each question is scored by token F1 "
                    "(right at 0.5 or more) instead of by containing a gold string.")
    marked.add_argument("out", type=Path, metavar="OUT.jsonl", help="the question set to write (a new file)")
    marked.add_argument("--chat", type=positive_int, action="append", metavar="ID",
                        help="only this chat's answers (repeatable; ids as in `bastion chats list`)")
    marked.set_defaults(func=run_questions_from_chats)

    report = commands.add_parser("report", help="write the report of a run folder again (any time)")
    report.add_argument("folder", type=Path, metavar="DIR")
    report.set_defaults(func=run_report)


def _adapter_spec(text: str) -> tuple[str, float]:
    from bastion.models.adapter_catalog import parse_adapter_spec
    from bastion.models.errors import ModelError

    try:
        spec = parse_adapter_spec(text)
    except ModelError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return spec.name, spec.scale


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("the fraction is a number above 0 and at most 1, e.g. 0.3")
    return value


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {','.join(MODES)}")
    return modes


def run_lab(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``lab run QUESTIONS``: progress on ``err``, the recommendation and files on ``out``."""
    out, err = out or sys.stdout, err or sys.stderr
    from bastion.desktop.app import App
    from bastion.desktop.lab.session import LabRequest, run_session

    request = LabRequest(questions=args.questions, collection=args.collection, adapters=args.adapter,
                         model=args.model, limit=args.limit, out=args.out, modes=args.modes,
                         max_tokens=args.max_tokens, seed=args.seed)
    folder: Path | None = None
    with App() as app:
        try:
            for event in run_session(app, request):
                folder = _print_event(event, out, err) or folder
        except KeyboardInterrupt:
            _stopped(folder, err)
            return 130
    return 0


def _stopped(folder: Path | None, err: TextIO) -> None:
    where = f" --out {folder}" if folder else ""
    print(f"\nStopped. The answers so far are kept: run the same command{where} to "
          "continue, or `bastion lab report` the folder for a partial report.", file=err)


def _print_event(event: object, out: TextIO, err: TextIO) -> Path | None:
    """Print one event of a lab session; the run folder once it is known."""
    from bastion.desktop.lab.runner import LabAnswered, LabFinished, LabStarted, duration
    from bastion.desktop.lab.session import LabChecked, LabReported

    if isinstance(event, LabChecked):
        print(f"{'Continuing' if event.resumed else 'Starting'} the lab run in {event.folder}: "
              f"{event.questions} questions × {len(event.arms)} arms "
              f"({', '.join(a.label for a in event.arms)}).", file=err)
        print(f"Loading {event.model_file.name}…", file=err)
        return Path(event.folder)
    if isinstance(event, LabStarted):
        if event.already_done:
            print(f"{event.already_done} of {event.total} answers already recorded.", file=err)
    elif isinstance(event, LabAnswered):
        verdict = "right" if event.scores.correct else "wrong"
        print(f"[{event.done}/{event.total}] {event.arm.label} · {event.question.id} · "
              f"{verdict} · {event.record.seconds:.1f} s · ETA {duration(event.eta_s)}",
              file=err, flush=True)
    elif isinstance(event, LabFinished):
        print(f"{event.answered} answers made in this run.", file=err)
    elif isinstance(event, LabReported):
        _print_report(event.files, out)
    return None


def run_freshness(args: argparse.Namespace, out: TextIO | None = None,
                  err: TextIO | None = None) -> int:
    """``lab freshness QUESTIONS --collection C``: the freshness experiment, then its report."""
    out, err = out or sys.stdout, err or sys.stderr
    from bastion.desktop.app import App
    from bastion.desktop.lab.freshness import (
        FreshnessIndexed,
        FreshnessPlanned,
        FreshnessRequest,
        run_freshness,
    )

    request = FreshnessRequest(questions=args.questions, collection=args.collection,
                               adapters=args.adapter, fraction=args.fraction, seed=args.seed,
                               model=args.model, out=args.out, max_tokens=args.max_tokens)
    folder: Path | None = None
    with App() as app:
        try:
            for event in run_freshness(app, request):
                if isinstance(event, FreshnessPlanned):
                    plan = event.plan
                    print(f"Changing {len(plan.changes)} of {plan.candidates} changeable facts in a "
                          f"copy of {event.documents} files, in {event.folder}…", file=err)
                elif isinstance(event, FreshnessIndexed):
                    print(f"Copy indexed in {event.build_s:.1f} s; after the change "
                          f"({event.changed_files} files), re-synced in {event.resync_s:.1f} s.",
                          file=err)
                else:
                    folder = _print_event(event, out, err) or folder
        except KeyboardInterrupt:
            _stopped(folder, err)
            return 130
    return 0


def _print_report(files: Any, out: TextIO) -> None:
    print("\n".join(f"- {line}" for line in files.summary.recommendation), file=out)
    print(f"\nReport: {files.markdown}\n        {files.html}\n"
          f"Answers: {files.csv}\n         {files.json}", file=out)


def run_questions_from_chats(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``lab questions-from-chats OUT``: the marked answers as a question set."""
    out = out or sys.stdout
    from bastion.desktop.app import App
    from bastion.desktop.lab.chat_questions import questions_from_chats, write_question_set

    with App() as app:
        rows = questions_from_chats(app.chats, args.chat)
    write_question_set(rows, args.out)
    chats = len({row["id"].split("-", 1)[0] for row in rows})
    print(f"Wrote {len(rows)} question{'s' if len(rows) != 1 else ''} from {chats} "
          f"chat{'s' if chats != 1 else ''} to {args.out}. Their gold answers are whole answers, "
          "scored by token F1 (right at 0.5 or more). Compare routes on them with "
          f"`bastion lab run {args.out} --collection NAME`.", file=out)
    return 0


def run_report(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``lab report DIR``: the report files of a run folder, made again from its answers."""
    out = out or sys.stdout
    from bastion.desktop.lab.report import report_again
    from bastion.desktop.lab.run_folder import RunFolder

    _print_report(report_again(RunFolder(args.folder)), out)
    return 0
