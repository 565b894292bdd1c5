"""``bastion lab run|report``: compare routes (model, documents, adapters) on a question set.

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
    from bastion.desktop.lab.runner import LabAnswered, LabFinished, LabStarted, duration
    from bastion.desktop.lab.session import LabChecked, LabReported, LabRequest, run_session

    request = LabRequest(questions=args.questions, collection=args.collection, adapters=args.adapter,
                         model=args.model, limit=args.limit, out=args.out, modes=args.modes,
                         max_tokens=args.max_tokens, seed=args.seed)
    folder: Path | None = None
    with App() as app:
        try:
            for event in run_session(app, request):
                if isinstance(event, LabChecked):
                    folder = event.folder
                    print(f"{'Continuing' if event.resumed else 'Starting'} the lab run in {folder}: "
                          f"{event.questions} questions × {len(event.arms)} arms "
                          f"({', '.join(a.label for a in event.arms)}).", file=err)
                    print(f"Loading {event.model_file.name}…", file=err)
                elif isinstance(event, LabStarted):
                    if event.already_done:
                        print(f"{event.already_done} of {event.total} answers already recorded.", file=err)
                elif isinstance(event, LabAnswered):
                    s = event.scores
                    verdict = "right" if s.correct else "wrong"
                    print(f"[{event.done}/{event.total}] {event.arm.label} · {event.question.id} · "
                          f"{verdict} · {event.record.seconds:.1f} s · ETA {duration(event.eta_s)}",
                          file=err, flush=True)
                elif isinstance(event, LabFinished):
                    print(f"{event.answered} answers made in this run.", file=err)
                elif isinstance(event, LabReported):
                    _print_report(event.files, out)
        except KeyboardInterrupt:
            where = f" --out {folder}" if folder else ""
            print(f"\nStopped. The answers so far are kept: run the same command{where} to "
                  "continue, or `bastion lab report` the folder for a partial report.", file=err)
            return 130
    return 0


def _print_report(files: Any, out: TextIO) -> None:
    print("\n".join(f"- {line}" for line in files.summary.recommendation), file=out)
    print(f"\nReport: {files.markdown}\n        {files.html}\n"
          f"Answers: {files.csv}\n         {files.json}", file=out)


def run_report(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``lab report DIR``: the report files of a run folder, made again from its answers."""
    out = out or sys.stdout
    from bastion.desktop.lab.report import report_again
    from bastion.desktop.lab.run_folder import RunFolder

    _print_report(report_again(RunFolder(args.folder)), out)
    return 0
