"""``bastion doctor``: check the installation, print one line per check."""

from __future__ import annotations

import argparse
import sys

from bastion.desktop.doctor import CheckResult, exit_code, run_doctor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check this installation: versions, data folder, models, no network, smoke flow",
        description="Check versions, the data folder's privacy, the models' integrity and the "
        "egress guard, then load the default model, answer, index a sample folder and search it. "
        "Exit status: 0 all passed, 1 a check failed, 2 some checks could not run.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="skip the smoke flow (no model is loaded)")
    parser.set_defaults(func=doctor)


def doctor(args: argparse.Namespace) -> int:
    results: list[CheckResult] = []
    for result in run_doctor(quick=args.quick):
        print(result.line(), flush=True)
        results.append(result)
    code: int = exit_code(results)
    failed = sum(r.status == "fail" for r in results)
    missing = sum(r.status == "unavailable" for r in results)
    summary = {0: "all checks passed", 1: f"{failed} check(s) failed",
               2: f"no check failed, but {missing} could not run"}[code]
    print(f"doctor: {summary}", file=sys.stderr if code else sys.stdout)
    return code
