"""``bastion adapters``: list, import, inspect, verify and remove LoRA adapters.

Thin: the adapter catalog, the checks against a base model and the import live in
``bastion.models.adapter_catalog`` / ``adapter_import``; this module turns arguments into calls
and results into text (or JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.desktop.cli.models_cmd import VERIFIED_LABELS, ProgressPrinter, _print_table, _size
from bastion.desktop.paths import data_paths

if TYPE_CHECKING:  # imported when a command runs, so refusing its arguments stays instant
    from bastion.models.adapter_catalog import AdapterCatalog, AdapterEntry
    from bastion.models.catalog import VerifyResult


def register(subparsers: Any) -> None:
    adapters = subparsers.add_parser(
        "adapters", help="LoRA adapters: list, import, info, verify, remove")
    sub = adapters.add_subparsers(dest="adapters_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="the imported adapters and the base each fits")
    listing.add_argument("--json", action="store_true", help="print JSON lines, one adapter each")
    listing.add_argument("--hash", action="store_true", help="compute missing SHA-256 values")
    listing.set_defaults(func=run_list)

    imp = sub.add_parser("import", help="check a GGUF LoRA adapter against its base model and "
                                        "copy it into the adapters folder")
    imp.add_argument("path", metavar="FILE", type=Path, help="the adapter .gguf")
    imp.add_argument("--base", metavar="MODEL",
                     help="the model it is for (default: the model it names, else the first "
                          "whose shapes fit)")
    imp.add_argument("--name", help="what to call it (default: the file name)")
    imp.add_argument("--sha256", metavar="HEX", help="refuse the file unless it has this SHA-256")
    imp.set_defaults(func=run_import)

    info = sub.add_parser("info", help="what an adapter says about itself and its base")
    info.add_argument("name", metavar="NAME", help="a name from `bastion adapters list`")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)

    verify = sub.add_parser("verify", help="re-hash adapters and compare with their records")
    verify.add_argument("name", metavar="NAME", nargs="?", help="one adapter (default: all)")
    verify.set_defaults(func=run_verify)

    remove = sub.add_parser("remove", help="delete an imported adapter")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=run_remove)


def _catalog() -> AdapterCatalog:
    from bastion.models.adapter_catalog import AdapterCatalog

    return AdapterCatalog(data_paths().adapters_dir)


def entry_json(entry: AdapterEntry, sha256: str | None = None) -> dict[str, Any]:
    """An adapter as a JSON object (the ``--json`` output; stable keys)."""
    info = entry.info
    base = entry.base
    return {
        "id": entry.id,
        "name": entry.name,
        "path": str(entry.path),
        "origin": entry.origin,
        "file_size": entry.file_size,
        "architecture": info.architecture if info else None,
        "rank": list(info.ranks) if info else None,
        "alpha": info.alpha if info else None,
        "targets": list(info.targets) if info else None,
        "adapted_weights": len(info.weights) if info else None,
        "layers": list(info.layers) if info else None,
        "hidden_size": info.hidden_size if info else None,
        "tensor_type": info.tensor_type if info else None,
        "names_base": ({"name": info.base_name, "sha256": info.base_sha256} if info else None),
        "base": None if base is None else {
            "model": base.model, "model_name": base.model_name,
            "model_sha256": base.model_sha256, "architecture": base.architecture,
            "n_embd": base.n_embd, "n_layer": base.n_layer, "matched_by": base.matched_by,
        },
        "sha256": sha256 or entry.sha256,
        "expected_sha256": entry.expected_sha256,
        "verified": entry.verified,
        "imported_at": entry.imported_at,
        "error": entry.error,
    }


def run_list(args: argparse.Namespace) -> int:
    catalog = _catalog()
    entries = catalog.entries(hash_files=args.hash)
    if args.json:
        from bastion.desktop.cli.json_output import print_json_lines

        print_json_lines(entry_json(e) for e in entries)
        return 0
    if not entries:
        print(f"No adapters yet. Import one with `bastion adapters import FILE`.\n"
              f"Adapters folder: {catalog.adapters_dir}")
        return 0
    rows = [("NAME", "ARCH", "RANK", "TARGETS", "BASE", "FILE", "VERIFIED")]
    for entry in entries:
        info = entry.info
        if info is None:
            rows.append((entry.id, "-", "-", "-", "-", _size(entry.file_size), "INVALID"))
            continue
        rows.append((
            entry.id,
            info.architecture,
            ",".join(str(r) for r in info.ranks) or "?",
            ",".join(info.targets),
            entry.base.model if entry.base else "not recorded",
            _size(entry.file_size),
            VERIFIED_LABELS[entry.verified],
        ))
    _print_table(rows)
    print(f"\nAdapters folder: {catalog.adapters_dir}")
    for entry in entries:
        if entry.error:
            print(f"{entry.id}: {entry.error}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from bastion.models.adapter_import import import_adapter
    from bastion.models.catalog import Catalog

    paths = data_paths()
    entry = import_adapter(args.path, paths.adapters_dir, Catalog(paths.models_dir),
                           ProgressPrinter(f"Importing {args.path.name}"), base=args.base,
                           name=args.name, expected_sha256=args.sha256)
    base = entry.base
    fits = f", which fits {base.model}" if base else ""
    print(f"Imported the adapter {entry.id}{fits}, into {paths.adapters_dir}")
    _print_entry(entry, entry.sha256)
    return 0


def run_info(args: argparse.Namespace) -> int:
    catalog = _catalog()
    entry = catalog.resolve(args.name)
    if entry.info is None:
        print(f"bastion: {entry.error}", file=sys.stderr)
        return 1
    sha = catalog.hash_cache.sha256(
        entry.path, None if args.json else ProgressPrinter(f"Hashing {entry.path.name}"))
    if args.json:
        print(json.dumps(entry_json(entry, sha), indent=2))
    else:
        _print_entry(entry, sha)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    catalog = _catalog()
    targets = [catalog.resolve(args.name)] if args.name else catalog.entries()
    if not targets:
        print("No adapters to verify.")
        return 0
    results: list[VerifyResult] = []
    for entry in targets:
        result = catalog.verify(entry, ProgressPrinter(f"Hashing {entry.path.name}"))
        results.append(result)
        label = "ok" if result.ok else "FAILED"
        print(f"{label:6} {result.entry_id}: {VERIFIED_LABELS[result.state]} - {result.message}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} adapters failed verification.", file=sys.stderr)
        return 1
    return 0


def run_remove(args: argparse.Namespace) -> int:
    entry = _catalog().remove(args.name)
    print(f"Removed the adapter {entry.id} ({entry.path}).")
    return 0


def _print_entry(entry: AdapterEntry, sha: str | None) -> None:
    info = entry.info
    assert info is not None
    base = entry.base
    layers = f"{len(info.layers)} ({info.layers[0]}–{info.layers[-1]})" if info.layers else "-"
    named = " · ".join(x for x in (info.base_name, info.base_sha256) if x) or "nothing"
    fields = [
        ("name", entry.id),
        ("adapter name", info.name or "-"),
        ("path", str(entry.path)),
        ("origin", entry.origin),
        ("type", "LoRA"),
        ("architecture", info.architecture),
        ("rank", ", ".join(str(r) for r in info.ranks) or "-"),
        ("alpha", f"{info.alpha:g}" if info.alpha is not None else "not set"),
        ("targets", ", ".join(info.targets)),
        ("adapted weights", str(len(info.weights))),
        ("layers", layers),
        ("hidden size", str(info.hidden_size or "unknown")),
        ("tensor type", info.tensor_type or "unknown"),
        ("names as base", named),
        ("fits", (f"{base.model} (hidden size {base.n_embd}, {base.n_layer} layers; found by "
                  f"{base.matched_by})") if base else "not recorded (not imported)"),
        ("file size", f"{_size(entry.file_size)} ({entry.file_size:,} bytes)"),
        ("sha256", sha or "not computed"),
        ("recorded sha256", entry.expected_sha256 or "none"),
        ("imported at", entry.imported_at or "-"),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name:<{width}}  {value}")
