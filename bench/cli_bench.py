"""Command-line latency, as a person feels it: whole-process wall times of ``bastion`` commands.

Usage:
    .venv/bin/python bench/cli_bench.py [--runs 5] [--bastion PATH] [--skip-ask]

Each command runs ``--runs`` times as a fresh process (the installed ``bastion`` script, or
``python -m bastion.desktop``) in a scratch data folder with ``n_threads 1`` (the machine is
shared); the table shows the median and the range.

- "cold": ``--no-service``, so every process imports torch and loads the embedder and the model
  itself (the OS file cache is warm after the first run), as every command did before the
  resident service.
- "first call": one run with no service running: the command starts ``bastion serve`` in the
  background, waits for its socket and is answered by it (one sample: the service then stays).
- "warm": answered by the resident service that first call started.

- ``--help`` and a refused argument (``ask … --max-tokens -5``): the cost of starting and
  refusing, which must stay well under 0.5 s (no service is involved).
- ``search``: over a three-file collection the script indexes once before timing.
- ``ask --mode docs``: time to the first byte of the answer on stdout (retrieval, model load,
  prefill and one token), then the whole process.

The service is stopped (SIGTERM to the pid in ``service.lock``) before the script exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
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


def cell(times: list[float] | None) -> str:
    if not times:
        return "n/a"
    median = statistics.median(times)
    spread = f" ({min(times):.2f}–{max(times):.2f})" if len(times) > 1 else ""
    return f"{median:.2f} s{spread}"


def row(name: str, cold: list[float] | None, first: list[float] | None = None,
        warm: list[float] | None = None) -> str:
    return f"| {name} | {cell(cold)} | {cell(first)} | {cell(warm)} |"


def stop_service(home: Path) -> None:
    """SIGTERM the service the bench started (its pid is in the lock file), and wait for it."""
    try:
        pid = int(json.loads((home / "service.lock").read_text() or "{}")["pid"])
    except (OSError, ValueError, KeyError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            os.kill(pid, 0)
            time.sleep(0.1)


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
        env = {**os.environ, "BASTION_HOME": str(home), "BASTION_SERVICE": "on"}
        wall([*base, "settings", "set", "n_threads", "1"], env, 0)
        wall([*base, "library", "add", "scratch", str(docs)], env, 0)
        search = [*base, "search", "slate harbour", "--collection", "scratch"]
        ask = [*base, "ask", QUESTION, "--mode", "docs", "--collection", "scratch",
               "--max-tokens", "32", "--temperature", "0"]
        try:
            rows = [
                row("`bastion --help`", measure(args.runs, lambda: wall([*base, "--help"], env, 0))),
                row("refused: `ask … --max-tokens -5`", measure(args.runs, lambda: wall(
                    [*base, "ask", QUESTION, "--max-tokens", "-5"], env, 2))),
            ]
            cold_search = measure(args.runs, lambda: wall([*search, "--no-service"], env, 0))
            first_search = [wall(search, env, 0)]  # starts the service
            warm_search = measure(args.runs, lambda: wall(search, env, 0))
            rows.append(row("`search` (3-file collection)", cold_search, first_search,
                            warm_search))
            if not args.skip_ask:
                cold = [first_byte([*ask, "--no-service"], env) for _ in range(args.runs)]
                stop_service(home)
                first = [first_byte(ask, env)]  # starts the service
                warm = [first_byte(ask, env) for _ in range(args.runs)]
                rows.append(row("`ask --mode docs`: first token", [p[0] for p in cold],
                                [p[0] for p in first], [p[0] for p in warm]))
                rows.append(row("`ask --mode docs`: whole answer (32 tokens)",
                                [p[1] for p in cold], [p[1] for p in first],
                                [p[1] for p in warm]))
        finally:
            stop_service(home)

    print(f"bastion command line, whole-process wall time, median of {args.runs} (range) "
          f"({os.cpu_count()} CPUs, shared with other work; {' '.join(base)})\n")
    print("| command | cold: `--no-service` | first call: starts the service | warm: via the service |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
