"""``bastion models``: list, inspect, verify and import GGUF model files; choose the default;
release the model a background service holds.

Thin: the catalog, verification and import live in ``bastion.models``; this module only turns
arguments into calls and results into text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bastion.desktop.paths import data_paths

if TYPE_CHECKING:  # imported when a command runs, so refusing its arguments stays instant
    from bastion.models.catalog import Catalog, ModelEntry, VerifyResult

VERIFIED_LABELS = {
    "verified": "ok",
    "mismatch": "MISMATCH",
    "unrecorded": "no record",
    "unchecked": "not checked",
    "invalid": "INVALID",
    "missing": "MISSING",
}


def register(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="GGUF models: list, info, verify, import, default, unload, remote")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="the embedded default and the models folder")
    listing.add_argument("--hash", action="store_true",
                         help="compute missing SHA-256 values (slow for big files)")
    listing.add_argument("--json", action="store_true", help="print JSON lines, one model each")
    listing.set_defaults(func=run_list)

    info = sub.add_parser("info", help="everything a model file says about itself, and its SHA-256")
    info.add_argument("model", metavar="MODEL", help="id from `bastion models list`, file name or path")
    info.add_argument("--template", action="store_true", help="print the whole chat template")
    info.set_defaults(func=run_info)

    verify = sub.add_parser("verify", help="re-hash model files and compare with their records")
    verify.add_argument("model", metavar="MODEL", nargs="?", help="one model (default: all)")
    verify.set_defaults(func=run_verify)

    imp = sub.add_parser("import", help="validate a .gguf file (or a folder with SHA256SUMS) and copy it into the models folder")
    imp.add_argument("path", metavar="PATH", type=Path, help="the .gguf file to import")
    imp.add_argument("--sha256", metavar="HEX", help="refuse the file unless it has this SHA-256")
    imp.set_defaults(func=run_import)

    default = sub.add_parser("default", help="print the model Bastion starts with, or choose it")
    default.add_argument("model", metavar="MODEL", nargs="?",
                         help="id from `bastion models list`, file name or path; 'default' "
                              "for the embedded model")
    default.set_defaults(func=run_default)

    unload = sub.add_parser(
        "unload", help="release the chat model a running background service holds",
        description="Free the memory of the chat model the background service (`bastion "
                    "serve`, started by search and ask) keeps loaded; the next question loads "
                    "it again. Starts no service.")
    unload.add_argument("--json", action="store_true", help="print one JSON object")
    unload.set_defaults(func=run_unload)

    remote = sub.add_parser(
        "remote", help="the models the remote inference server serves (as remote:NAME)",
        description="List the models on the on-prem OpenAI-compatible server set with "
                    "`bastion settings set remote_url URL` (and remote_token); use one with "
                    "--model remote:NAME or make it the default with "
                    "`bastion models default remote:NAME`.")
    remote.add_argument("--json", action="store_true", help="print JSON lines, one model each")
    remote.set_defaults(func=run_remote)


def _catalog() -> Catalog:
    from bastion.models.catalog import Catalog

    return Catalog(data_paths().models_dir)


class ProgressPrinter:
    """``label: 42% (40.0 of 95.0 MiB)`` on stderr.

    On a terminal the line is redrawn once per percent; in a log or pipe only the final line is
    written, so captured output stays readable.
    """

    def __init__(self, label: str, err: TextIO | None = None) -> None:
        self.label = label
        self.err = err or sys.stderr
        self.live = self.err.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        finished = done >= total
        percent = 100 * done // total if total else 100
        if percent == self.last or not (self.live or finished):
            return
        self.last = percent
        line = f"{self.label}: {percent}% ({_size(done)} of {_size(total)})"
        if self.live:
            print(f"\r{line}", end="\n" if finished else "", file=self.err, flush=True)
        else:
            print(line, file=self.err, flush=True)


def run_list(args: argparse.Namespace) -> int:
    from bastion.desktop.configuration import is_default_model
    from bastion.desktop.settings import Settings

    catalog = _catalog()
    entries = catalog.entries(hash_files=args.hash)
    settings = Settings.load(data_paths().settings_file)
    if args.json:
        from bastion.desktop.cli.json_output import model_json, print_json_lines

        print_json_lines(model_json(e, is_default_model(settings, e)) for e in entries)
        return 0
    rows = [("ID", "ARCH", "SIZE", "QUANT", "CONTEXT", "TEMPLATE", "FILE", "VERIFIED")]
    for entry in entries:
        info = entry.info
        marker = " *" if is_default_model(settings, entry) else ""
        if info is None:
            rows.append((entry.id + marker, "-", "-", "-", "-", "-", _size(entry.file_size),
                         VERIFIED_LABELS[entry.verified]))
            continue
        rows.append((
            entry.id + marker,
            info.architecture or "?",
            _params(entry),
            info.quantization or "?",
            str(info.context_length) if info.context_length else "?",
            "yes" if info.chat_template else "none",
            _size(entry.file_size),
            VERIFIED_LABELS[entry.verified] + (" (embedding)" if info.is_embedding_model else ""),
        ))
    _print_table(rows)
    print(f"\n* default model. Models folder: {catalog.models_dir}")
    if catalog.embedded_error:
        print(f"Note: {catalog.embedded_error}", file=sys.stderr)
    for entry in entries:
        if entry.error:
            print(f"{entry.id}: {entry.error}", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    catalog = _catalog()
    entry = catalog.resolve(args.model)
    if entry.info is None:
        print(f"bastion: {entry.error}", file=sys.stderr)
        return 1
    sha = catalog.hash_cache.sha256(entry.path, ProgressPrinter(f"Hashing {entry.path.name}"))
    _print_entry(entry, sha)
    info = entry.info
    print("\nMetadata:")
    for key, value in info.metadata.items():
        if key == "tokenizer.chat_template" and not args.template:
            continue
        text = str(value)
        if not args.template and len(text) > 120:
            text = text[:117] + "..."
        print(f"  {key} = {text}")
    if info.chat_template is not None:
        if args.template:
            print("\nChat template:")
            print(info.chat_template)
        else:
            print(f"\nChat template: {len(info.chat_template)} characters (--template prints it)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    catalog = _catalog()
    targets = [catalog.resolve(args.model)] if args.model else catalog.entries()
    results: list[VerifyResult] = []
    for entry in targets:
        result = catalog.verify(entry, ProgressPrinter(f"Hashing {entry.path.name}"))
        results.append(result)
        label = "ok" if result.ok else "FAILED"
        print(f"{label:6} {result.entry_id}: {VERIFIED_LABELS[result.state]} - {result.message}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} model files failed verification.", file=sys.stderr)
        return 1
    return 0


def run_default(args: argparse.Namespace) -> int:
    from bastion.desktop.configuration import choose_default_model
    from bastion.desktop.settings import Settings
    from bastion.models.errors import ModelError

    paths = data_paths()
    settings = Settings.load(paths.settings_file)
    if args.model is not None:
        settings = choose_default_model(settings, paths.settings_file, paths.models_dir, args.model)
    spec = settings.default_model
    if spec is not None and spec.startswith("remote:"):
        verb = "is now" if args.model is not None else "is"
        print(f"{spec}  ({settings.remote_url})")
        print(f"The default model {verb} {spec}, on the remote server: Bastion uses it when no "
              "--model is given.", file=sys.stderr)
        return 0
    try:
        entry = _catalog().resolve(spec or "default")
    except ModelError as error:  # the setting names a model that has gone since: say so
        print(f"{spec}  (not available)")
        print(f"bastion: {error} Choose another with `bastion models default NAME`.",
              file=sys.stderr)
        return 1
    where = "embedded" if entry.origin == "embedded" else str(entry.path)
    verb = "is now" if args.model is not None else "is"
    print(f"{entry.id}  ({where})")
    print(f"The default model {verb} {entry.id}: Bastion loads it when no --model is given.",
          file=sys.stderr)
    return 0


def run_unload(args: argparse.Namespace) -> int:
    from bastion.desktop.cli.service_client import ServiceClient

    client = ServiceClient(data_paths().home)
    if not client.running():
        result: dict[str, Any] = {"unloaded": False, "model": None, "freed_bytes": None,
                                  "service": False}
        message = ("No background service is running, so no model is loaded in one; nothing "
                   "needed unloading.")
    else:
        result = {**client.unload(), "service": True}
        model = result.get("model") or {}
        if result.get("unloaded"):
            freed = result.get("freed_bytes")
            memory = f", freeing {_size(int(freed))}" if isinstance(freed, int) else ""
            message = (f"Unloaded {model.get('name')} ({model.get('path')}) from the background "
                       f"service{memory}. The next question loads it again.")
        else:
            message = "The background service had no model loaded; nothing needed unloading."
    if args.json:
        import json

        print(json.dumps(result, ensure_ascii=False))
    else:
        print(message)
    return 0


def run_remote(args: argparse.Namespace) -> int:
    from bastion.desktop.app import remote_endpoint
    from bastion.desktop.settings import Settings
    from bastion.models.remote_engine import REMOTE_PREFIX, list_models

    settings = Settings.load(data_paths().settings_file)
    endpoint = remote_endpoint(settings)
    entries = list_models(endpoint, read_timeout_s=settings.remote_timeout_s)
    if args.json:
        from bastion.desktop.cli.json_output import print_json_lines

        print_json_lines({"id": REMOTE_PREFIX + str(e["id"]), "name": e["id"],
                          "server": endpoint.url,
                          "default": settings.default_model == REMOTE_PREFIX + str(e["id"])}
                         for e in entries)
        return 0
    for entry in entries:
        marker = " *" if settings.default_model == REMOTE_PREFIX + str(entry["id"]) else ""
        print(REMOTE_PREFIX + str(entry["id"]) + marker)
    token = "with a token" if endpoint.token else "without a token"
    print(f"\n{len(entries)} model(s) on {endpoint.url} ({token}). Use one with "
          "--model remote:NAME.", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from bastion.models.model_import import import_folder, import_model

    models_dir = data_paths().models_dir
    if args.path.is_dir():
        entries = import_folder(args.path, models_dir, ProgressPrinter(f"Importing {args.path.name}"))
    else:
        entries = [import_model(args.path, models_dir, ProgressPrinter(f"Importing {args.path.name}"),
                                expected_sha256=args.sha256)]
    for entry in entries:
        print(f"Imported {entry.id} into {models_dir}")
        _print_entry(entry, entry.sha256)
    return 0


def _print_entry(entry: ModelEntry, sha: str | None) -> None:
    info = entry.info
    assert info is not None
    fields = [
        ("id", entry.id),
        ("name", entry.name),
        ("general.name", info.name or "-"),  # the GGUF's own title; "name" is the id
        ("path", str(entry.path)),
        ("origin", entry.origin + (" (default)" if entry.is_default else "")),
        ("architecture", info.architecture or "unknown"),
        ("size label", info.size_label or "-"),
        ("parameters", f"{info.parameter_count:,}" if info.parameter_count else "-"),
        ("quantization", info.quantization or "unknown"),
        ("context length", str(info.context_length or "unknown")),
        ("chat template", "yes" if info.chat_template else "none (a default will be used)"),
        ("template sha256", info.chat_template_sha256 or "-"),
        ("embedding model", "yes (not usable for chat)" if info.is_embedding_model else "no"),
        ("file size", f"{_size(info.file_size)} ({info.file_size:,} bytes)"),
        ("gguf", f"version {info.version}, {info.tensor_count} tensors, {info.kv_count} keys"),
        ("sha256", sha or "not computed"),
        ("recorded sha256", entry.expected_sha256 or "none"),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name:<{width}}  {value}")


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _params(entry: ModelEntry) -> str:
    info = entry.info
    if info is None:
        return "-"
    if info.size_label:
        return info.size_label
    count = info.parameter_count
    if not count:
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def _size(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
