"""``bastion library add|sync|watch|status|files|remove`` and ``bastion search``.

Thin: every command calls ``bastion.desktop.library``. Long work reports progress on stderr
(a bar on a terminal: share of the bytes done, speed, ETA, the file at work; ``--json``: JSON
lines on stdout, ``sync_output.py``); Ctrl-C stops cleanly and the next sync resumes where it
stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bastion.desktop.cli.arg_types import positive_int
from bastion.desktop.cli.sync_output import JsonProgress, ProgressPrinter
from bastion.store.library_types import (
    DOCUMENT_STATES,
    CollectionStatus,
    DocumentInfo,
    SearchHit,
    SyncProgress,
)

# As bastion.desktop.library.RECONCILE_INTERVAL_S (a test checks); not imported from there,
# because that loads numpy before `bastion search` knows whether a service will answer it.
RECONCILE_INTERVAL_S = 300.0


def register(subparsers: Any) -> None:
    """Add the ``library`` command group and the top-level ``search`` command."""
    library = subparsers.add_parser("library", help="index folders of documents for search and answers")
    commands = library.add_subparsers(dest="library_command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="create a collection over folders (or add folders to it) and index them")
    add.add_argument("name", help="collection name")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="folders to index")
    add.add_argument("--embedder", type=Path, metavar="FOLDER",
                     help="a local sentence-transformers folder (default: all-MiniLM-L6-v2)")
    add.add_argument("--no-sync", action="store_true", help="only record the folders; index later")
    add.add_argument("--json", action="store_true",
                     help="print progress as JSON lines on stdout instead of a bar")
    add.set_defaults(func=run_add)

    sync = commands.add_parser("sync", help="bring collections up to date with their folders")
    sync.add_argument("name", nargs="?", help="one collection (default: all)")
    sync.add_argument("--json", action="store_true",
                      help="print progress as JSON lines on stdout instead of a bar")
    sync.set_defaults(func=run_sync)

    watch = commands.add_parser("watch", help="keep collections in sync as files change (Ctrl-C stops)")
    watch.add_argument("name", nargs="?", help="one collection (default: all)")
    watch.add_argument("--reconcile", type=float, default=RECONCILE_INTERVAL_S, metavar="SECONDS",
                       help="full re-check interval (default: %(default)s)")
    watch.add_argument("--json", action="store_true",
                       help="print progress and waits as JSON lines on stdout")
    watch.set_defaults(func=run_watch)

    status = commands.add_parser("status", help="documents per state, and why some are not indexed")
    status.add_argument("name", nargs="?", help="one collection (default: all)")
    status.add_argument("--json", action="store_true",
                        help="print one JSON object per collection (JSON lines)")
    status.set_defaults(func=run_status)

    files = commands.add_parser("files", help="every file of a collection with its state and reason")
    files.add_argument("name", help="collection name")
    files.add_argument("--state", metavar="STATE",
                       help=f"only files in this state ({', '.join(DOCUMENT_STATES)})")
    files.add_argument("--json", action="store_true", help="print one JSON object per file (JSON lines)")
    files.set_defaults(func=run_files)

    remove = commands.add_parser("remove", help="forget a collection (your files are not touched)")
    remove.add_argument("name", help="collection name")
    remove.set_defaults(func=run_remove)

    search = subparsers.add_parser("search", help="search your documents (no model needed)")
    search.add_argument("query", help="what to look for (quote it)")
    search.add_argument("--collection", action="append", default=[], metavar="NAME",
                        help="search only this collection (repeatable)")
    search.add_argument("-k", type=positive_int, default=10, metavar="N",
                        help="how many results (default: 10)")
    search.add_argument("--json", action="store_true",
                        help="print one JSON object per result (JSON lines), best first")
    search.add_argument("--no-service", action="store_true",
                        help="search in this process instead of the resident service")
    search.set_defaults(func=run_search)


def run_add(args: argparse.Namespace) -> int:
    """``library add NAME PATH...``."""
    from bastion.desktop import library as use_case

    with use_case.open_library() as library:
        use_case.add_collection(library, args.name, args.paths, args.embedder)
        print(f"Collection {args.name!r}: {', '.join(library.collection(args.name).roots)}", file=sys.stderr)
        if args.no_sync:
            return 0
        return _sync(library.sync(args.name), _printer(args))


def run_sync(args: argparse.Namespace) -> int:
    """``library sync [NAME] [--json]``."""
    from bastion.desktop import library as use_case

    with use_case.open_library() as library:
        return _sync(library.sync(args.name), _printer(args))


def _printer(args: argparse.Namespace) -> ProgressPrinter | JsonProgress:
    return JsonProgress(sys.stdout) if getattr(args, "json", False) else ProgressPrinter(sys.stderr)


def run_watch(args: argparse.Namespace) -> int:
    """``library watch [NAME] [--json]``: sync, then follow changes until Ctrl-C."""
    from bastion.desktop import library as use_case

    with use_case.open_library() as library:
        printer = _printer(args)
        events = use_case.watch(library, args.name, reconcile_s=args.reconcile)
        print("Watching for changes (Ctrl-C stops).", file=sys.stderr)
        try:
            for event in events:
                if isinstance(event, SyncProgress):
                    printer.show(event)
                elif args.json:
                    print(json.dumps({"type": "watch", "reason": event.reason,
                                      "changed_paths": event.changed_paths}), flush=True)
        except KeyboardInterrupt:
            events.close()
            print("\nStopped watching; the next sync resumes where this one stopped.", file=sys.stderr)
            return 130
    return 0


def run_status(args: argparse.Namespace) -> int:
    """``library status [NAME] [--json]``."""
    from bastion.desktop import library as use_case

    with use_case.open_library() as library:
        statuses = library.status(args.name)
        if args.json:
            for status in statuses:
                print(json.dumps(status_json(status), ensure_ascii=False))
            return 0
        if not statuses:
            print("No collections yet. Create one with: bastion library add NAME FOLDER")
        for status in statuses:
            print(format_status(status))
    return 0


def run_files(args: argparse.Namespace) -> int:
    """``library files NAME [--state STATE] [--json]``."""
    from bastion.desktop import library as use_case

    with use_case.open_library() as library:
        documents = library.documents(args.name, [args.state] if args.state else None)
        roots = library.collection(args.name).roots
    if args.json:
        for document in documents:
            print(json.dumps(document_json(document), ensure_ascii=False))
        return 0
    if documents:
        print(format_files(documents, roots))
    which = f" {args.state}" if args.state else ""
    print(f"[{len(documents)}{which} file{'s' if len(documents) != 1 else ''} in {args.name}]",
          file=sys.stderr)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """``library remove NAME``."""
    from bastion.desktop import library as use_case

    with use_case.open_library() as library:
        library.remove_collection(args.name)
    print(f"Removed collection {args.name!r} (your files are untouched).", file=sys.stderr)
    return 0


def run_search(args: argparse.Namespace) -> int:
    """``search QUERY [--collection NAME] [-k N] [--json] [--no-service]``."""
    from bastion.desktop.cli import service_client
    from bastion.desktop.paths import data_paths

    home = data_paths().home
    result = None
    if service_client.wanted(args.no_service, home):
        try:
            result = service_client.ServiceClient(home).search(args.query, args.collection, args.k)
        except service_client.ServiceDidNotStart as error:
            # A search needs no model: a service that cannot load one must not stop it.
            print(f"note: {error} Searching in this process instead.", file=sys.stderr)
    if result is not None:
        hits = [SearchHit(**hit) for hit in result["hits"]]
        timings: dict[str, float] = result.get("timings", {})
    else:
        from bastion.desktop import library as use_case

        with use_case.open_library() as library:
            hits = library.search(args.query, args.collection or None, args.k)
            timings = library.last_timings
    if args.json:
        for rank, hit in enumerate(hits, start=1):
            print(json.dumps(hit_json(hit, rank), ensure_ascii=False))
    else:
        print(format_hits(hits))
    print(f"[{len(hits)} results; search {timings.get('search_ms', 0):.0f} ms, "
          f"query embedding {timings.get('embed_ms', 0):.0f} ms]", file=sys.stderr)
    return 0


def hit_json(hit: SearchHit, rank: int) -> dict[str, object]:
    """A search result as a JSON object (the ``search --json`` line; stable keys)."""
    return {"rank": rank, **asdict(hit)}


def _sync(events: Iterable[SyncProgress], printer: ProgressPrinter | JsonProgress) -> int:
    iterator = iter(events)
    try:
        for event in iterator:
            printer.show(event)
    except KeyboardInterrupt:
        close = getattr(iterator, "close", None)
        if close:
            close()
        print("\nStopped; the next sync resumes where this one stopped.", file=sys.stderr)
        return 130
    return 0


def format_status(status: CollectionStatus) -> str:
    """A collection's status as text: folders, counts per state, reasons for the rest."""
    lines = [f"{status.name}  ({', '.join(status.roots)})"]
    counts = "  ".join(f"{state}: {n}" for state, n in status.counts.items() if n) or "no documents yet"
    lines.append(f"  {counts}  ·  chunks: {status.chunks}")
    if status.stale:
        lines.append("  The embedding model or chunking changed: the next sync rebuilds this collection.")
    for warning in status.warnings:
        lines.append(f"  Warning: {warning}")
    if status.hidden_note:
        lines.append(f"  {status.hidden_note} (set index_hidden to index them).")
    for failure in status.failures:
        lines.append(f"  [{failure.state}] {failure.path}: {failure.reason}")
    return "\n".join(lines)


def status_json(status: CollectionStatus) -> dict[str, object]:
    """A collection's status as a JSON object (the ``status --json`` line; stable keys)."""
    return {**asdict(status), "warnings": status.warnings, "hidden_note": status.hidden_note}


def document_json(document: DocumentInfo) -> dict[str, object]:
    """A file of a collection as a JSON object (the ``files --json`` line; stable keys)."""
    return asdict(document)


def format_files(documents: Sequence[DocumentInfo], roots: Sequence[str]) -> str:
    """A table of files: state, chunks, path (relative to a lone folder) and the reason."""
    lines = [f"{'STATE':<11}  {'CHUNKS':>6}  FILE"]
    for doc in documents:
        line = f"{doc.state.replace('_', ' '):<11}  {doc.chunk_count:>6}  {_relative(doc.path, roots)}"
        if doc.reason:
            line += f"  — {doc.reason}"
        lines.append(line)
    return "\n".join(lines)


def _relative(path: str, roots: Sequence[str]) -> str:
    """``path`` under the collection's one folder; the whole path when there are several."""
    if len(roots) == 1:
        prefix = roots[0].rstrip(os.sep) + os.sep
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def format_hits(hits: list[SearchHit]) -> str:
    """Search results: rank, file, page, score and a one-line snippet."""
    if not hits:
        return "No results."
    lines = []
    for n, hit in enumerate(hits, start=1):
        where = hit.path + (f", page {hit.page}" if hit.page is not None else "")
        snippet = " ".join(hit.text.split())
        snippet = snippet[:157] + "…" if len(snippet) > 160 else snippet
        lines.append(f"{n:2}. {where}  (score {hit.score:.4f})")
        lines.append(f"    {snippet}")
    return "\n".join(lines)
