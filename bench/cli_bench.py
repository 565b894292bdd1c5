"""Command-line latency, as a person feels it: whole-process wall times of ``bastion`` commands.

Usage:
    .venv/bin/python bench/cli_bench.py [--runs 5] [--bastion PATH]

Each command runs ``--runs`` times as a fresh process (the installed ``bastion`` script, or
``python -m bastion.desktop``) in a scratch data folder; the table shows the median and the
range. "cold" is a new process every time (no resident service; the OS file cache is warm after
the first run). "warm" is a command answered by a resident ``bastion serve``, which does not
exist yet: n/a.

- ``--help`` and a refused argument (``ask … --max-tokens -5``): the cost of starting and
  refusing, which must stay well under 0.5 s.
- ``search``: over a three-file collection the script indexes once before timing.
- ``ask --mode docs``: time to the first byte of the answer on stdout (retrieval, model load,
  prefill and one token), then the whole process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DOCUMENTS = {
    "tallow.txt": "The river Tallow rises in the Brenmoor hills and reaches the sea at Carrick. "
                  "Its lower course was canalised in 1847 to carry slate to the harbour.",
    "slate.txt": "Carrick harbour shipped roofing slate from the Brenmoor quarries until 1921, "
                 "when the last quarry closed after a flood.",
    "lighthouse.txt": "The Carrick lighthouse was first lit in 1852; its lamp burned colza oil "
                      "and was visible for eighteen miles.",
}
QUESTION = "When was the river Tallow canalised?"


def command(bastion: str | None) -> list[str]:
    return [bastion] if bastion else [sys.executable, "-m", "bastion.desktop"]


def wall(argv: list[str], env: dict[str, str], expect: int) -> float:
    """Seconds from start to exit of ``argv``; its exit status must be ``expect``."""
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
    return elapsed


def first_byte(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first byte on stdout, seconds to exit)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(1)
    ttft = time.perf_counter() - started
    proc.stdout.read()
    if proc.wait(600) != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return ttft, time.perf_counter() - started


def measure(runs: int, once: Callable[[], float]) -> list[float]:
    return [once() for _ in range(runs)]


def row(name: str, times: list[float]) -> str:
    median = statistics.median(times)
    return (f"| {name} | {median:.2f} s | {min(times):.2f}–{max(times):.2f} s | n/a |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    default = shutil.which("bastion", path=str(Path(sys.executable).parent))
    parser.add_argument("--bastion", default=default,
                        help="the bastion script (default: the one beside this Python)")
    parser.add_argument("--skip-ask", action="store_true", help="leave out the model (fast run)")
    args = parser.parse_args()
    base = command(args.bastion)

    with tempfile.TemporaryDirectory(prefix="cli-bench-") as scratch:
        home, docs = Path(scratch) / "home", Path(scratch) / "docs"
        docs.mkdir()
        for name, text in DOCUMENTS.items():
            (docs / name).write_text(text, encoding="utf-8")
        env = {**os.environ, "BASTION_HOME": str(home)}
        wall([*base, "library", "add", "scratch", str(docs)], env, 0)

        rows = [
            row("`bastion --help`", measure(args.runs, lambda: wall([*base, "--help"], env, 0))),
            row("refused: `ask … --max-tokens -5`", measure(args.runs, lambda: wall(
                [*base, "ask", QUESTION, "--max-tokens", "-5"], env, 2))),
            row("`search` (3-file collection)", measure(args.runs, lambda: wall(
                [*base, "search", "slate harbour", "--collection", "scratch"], env, 0))),
        ]
        if not args.skip_ask:
            ask = [*base, "ask", QUESTION, "--mode", "docs", "--collection", "scratch",
                   "--max-tokens", "32", "--temperature", "0"]
            pairs = [first_byte(ask, env) for _ in range(args.runs)]
            rows.append(row("`ask --mode docs`: first token", [p[0] for p in pairs]))
            rows.append(row("`ask --mode docs`: whole answer (32 tokens)", [p[1] for p in pairs]))

    print(f"bastion command line, whole-process wall time, median of {args.runs} "
          f"({os.cpu_count()} CPUs; {' '.join(base)})\n")
    print("| command | cold (median) | cold (range) | warm |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
