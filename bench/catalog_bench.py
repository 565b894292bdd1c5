"""Model-file work: header validation, hashing, listing and import, on a real GGUF.

    .venv/bin/python bench/catalog_bench.py [--model PATH] [--runs 5]

Defaults to the embedded SmolLM2-135M (98 MB, 49k-token vocabulary). Works in a temporary
models folder and removes it afterwards. Prints a Markdown table (median of ``--runs``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bastion.desktop  # noqa: F401 - offline environment
from bastion.models.catalog import Catalog, embedded_default_model_path
from bastion.models.file_hashes import sha256_file
from bastion.models.gguf_file import read_gguf_info
from bastion.models.model_import import import_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.models.gguf_factory import copy_with_metadata


def median_s(work: Callable[[], object], runs: int, setup: Callable[[], object] | None = None
             ) -> float:
    times = []
    for _ in range(runs):
        if setup is not None:
            setup()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = args.model or embedded_default_model_path()
    size_mb = model.stat().st_size / 1e6
    rows: list[tuple[str, float, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp) / "models"
        catalog = Catalog(models_dir, embedded_path=model)
        rows.append(("read_gguf_info (validate header)", median_s(lambda: read_gguf_info(model),
                                                                  args.runs), ""))
        t = median_s(lambda: sha256_file(model), args.runs)
        rows.append(("sha256 of the whole file", t, f"{size_mb / t:.0f} MB/s"))
        rows.append(("catalog list, hashes cached",
                     median_s(lambda: catalog.entries(hash_files=True), args.runs), ""))
        dest = models_dir / "copy.gguf"

        def clear() -> None:
            dest.unlink(missing_ok=True)
            (models_dir / "manifest.json").unlink(missing_ok=True)

        src = Path(tmp) / "copy.gguf"
        src.write_bytes(model.read_bytes())
        t = median_s(lambda: import_model(src, models_dir, embedded_sha256="0" * 64), args.runs,
                     setup=clear)
        rows.append(("import (validate, copy + hash, fsync)", t, f"{size_mb / t:.0f} MB/s"))
        edited = Path(tmp) / "edited.gguf"
        rows.append(("copy_with_metadata (test fixture)", median_s(
            lambda: copy_with_metadata(model, edited, {"tokenizer.chat_template": "{{ x }}"}),
            args.runs), ""))

    print(f"Model files on {model.name} ({size_mb:.0f} MB), median of {args.runs} runs\n")
    print("| operation | time | throughput |")
    print("|---|---:|---:|")
    for name, seconds, rate in rows:
        shown = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
        print(f"| {name} | {shown} | {rate} |")


if __name__ == "__main__":
    main()
