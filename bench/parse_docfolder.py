"""Parse every file of a document folder through ParsePool and print Markdown tables.

Usage:
    .venv/bin/python bench/parse_docfolder.py [FOLDER] [--workers 2] [--timeout 60]
        [--memory-mb 1024] [--expected FILE.json]

Reports: outcome per status, per-kind throughput, the slowest files, reasons for skipped and
failed files, and (when FOLDER has markitdown_expected_strings.json) whether the strings
expected from 15 reference files are found. Every file must end in a stated status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from bastion.store.parse_worker import ParsePool
from bastion.store.parsers import ParseOutcome

DEFAULT_FOLDER = Path("/work/shared/data/docfolder")


def list_files(folder: Path) -> list[Path]:
    """Every non-directory entry under ``folder`` (symlinks included, not followed)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [Path(root) / name for name in sorted(files)]
    return found


def kind_of(path: Path, outcome: ParseOutcome) -> str:
    if outcome.document is not None:
        return outcome.document.kind
    return path.suffix.lower().lstrip(".") or "(none)"


def full_text(outcome: ParseOutcome) -> str:
    if outcome.document is None:
        return ""
    return "\n\n".join(page.text for page in outcome.document.pages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--expected", type=Path, default=None)
    args = parser.parse_args()

    files = list_files(args.folder)
    sizes = {
        path: (path.lstat().st_size if path.exists() or path.is_symlink() else 0) for path in files
    }
    results: dict[Path, ParseOutcome] = {}
    begun = time.perf_counter()
    with ParsePool(workers=args.workers, timeout_s=args.timeout, memory_mb=args.memory_mb) as pool:
        for path, outcome in pool.parse_many(files):
            results[path] = outcome
        wall = time.perf_counter() - begun
        startup = list(pool.startup_seconds)
    assert set(results) == set(files), "every file must get an outcome"

    print(f"## Parsing {args.folder} ({len(files)} files, {sum(sizes.values()) / 2**20:,.1f} MB)\n")
    print(
        f"{args.workers} workers, timeout {args.timeout:g} s, memory cap {args.memory_mb} MB; "
        f"wall time {wall:.1f} s; worker start-up {', '.join(f'{s:.2f}' for s in startup)} s\n"
    )

    statuses = Counter(outcome.status for outcome in results.values())
    print("| status | files |\n|---|---:|")
    for status in ("ok", "skipped", "failed", "crashed"):
        print(f"| {status} | {statuses.get(status, 0)} |")

    per_kind: dict[str, list[tuple[Path, ParseOutcome]]] = defaultdict(list)
    for path, outcome in results.items():
        per_kind[kind_of(path, outcome)].append((path, outcome))
    print(
        "\n| kind | files | ok | MB | parse s | MB/s | files/s | chars |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for kind, items in sorted(per_kind.items(), key=lambda item: -len(item[1])):
        megabytes = sum(sizes[path] for path, _ in items) / 2**20
        seconds = sum(outcome.parse_seconds or 0.0 for _, outcome in items)
        ok = sum(1 for _, outcome in items if outcome.status == "ok")
        chars = sum(len(full_text(outcome)) for _, outcome in items)
        rate = f"{megabytes / seconds:,.2f}" if seconds > 0 else "–"
        files_rate = f"{len(items) / seconds:,.1f}" if seconds > 0 else "–"
        print(
            f"| {kind} | {len(items)} | {ok} | {megabytes:,.2f} | {seconds:,.2f} | {rate} | {files_rate} | {chars:,} |"
        )

    slowest = sorted(results.items(), key=lambda item: -(item[1].parse_seconds or 0.0))[:10]
    print("\n| slowest files | MB | s | status |\n|---|---:|---:|---|")
    for path, outcome in slowest:
        print(
            f"| {path.relative_to(args.folder)} | {sizes[path] / 2**20:,.2f} | "
            f"{outcome.parse_seconds or 0.0:,.2f} | {outcome.status} |"
        )

    reasons = Counter(
        (
            outcome.status,
            outcome.reason.split(" (")[0]
            if outcome.reason.startswith("unsupported")
            else outcome.reason[:90],
        )
        for outcome in results.values()
        if outcome.status != "ok"
    )
    print("\n| status | reason | files |\n|---|---|---:|")
    for (status, reason), count in sorted(reasons.items(), key=lambda item: (item[0][0], -item[1])):
        print(f"| {status} | {reason.replace('|', '/')} | {count} |")

    expected_path = args.expected or args.folder / "markitdown_expected_strings.json"
    if expected_path.exists():
        print_expected(expected_path, args.folder, results)
    return 0


_MARKDOWN_LINK = re.compile(r"\]\([^)]*\)")
_MARKDOWN_MARKS = re.compile(r"[*_`#>|\[\]!]+")


def loose(text: str) -> str:
    """Text without Markdown decoration (links, emphasis, heading marks, table pipes)."""
    text = _MARKDOWN_LINK.sub("]", text)
    text = _MARKDOWN_MARKS.sub(" ", text)
    return " ".join(text.split())


def print_expected(expected_path: Path, folder: Path, results: dict[Path, ParseOutcome]) -> None:
    entries = json.loads(expected_path.read_text())
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in results:
        by_name[path.name].append(path)
    print(
        "\n| expected strings: file | status | found (exact) | found (ignoring Markdown) "
        "| still missing (first) | forbidden found |\n|---|---|---:|---:|---|---:|"
    )
    passed = loose_passed = 0
    for entry in entries:
        name = entry["filename"]
        candidates = [p for p in by_name.get(name, []) if "expected_outputs" not in p.parts]
        if not candidates:
            print(f"| {name} | not in folder | – | – | – |")
            continue
        outcome = results[candidates[0]]
        text = full_text(outcome)
        must = entry.get("must_include", [])
        found = [s for s in must if s in text]
        missing = [s for s in must if s not in text]
        flat = loose(text)
        loose_missing = [s for s in must if loose(s) not in flat]
        forbidden = [s for s in entry.get("must_not_include", []) if s in text]
        passed += not missing and not forbidden
        loose_passed += not loose_missing and not forbidden
        first_missing = loose_missing[0][:40].replace("|", "/") if loose_missing else ""
        print(
            f"| {name} | {outcome.status} | {len(found)}/{len(must)} | "
            f"{len(must) - len(loose_missing)}/{len(must)} | {first_missing} | {len(forbidden)} |"
        )
    print(
        f"\nentries fully passing: {passed}/{len(entries)} exact, "
        f"{loose_passed}/{len(entries)} ignoring Markdown decoration"
    )


if __name__ == "__main__":
    sys.exit(main())
