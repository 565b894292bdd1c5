"""Safer engine settings, tried in order when the engine's self-test crashes, and remembered.

A llama.cpp build can crash on one CPU and not another (the AMX kernels at the first token on
Sapphire Rapids), or with one way of loading and not another. The engine generates a few tokens
at load; if its process dies or the logits are garbage, it loads again one rung down this ladder:
no extra buffer types (repacked and AMX weights), then no mmap, then one thread, then the most
conservative CPU kernels. The rung that worked is remembered per model file, llama.cpp build and
CPU, so the next load starts there and the user is told once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .engine_types import LoadOptions
from .llama_backends import BASELINE, HELD_BACK, build_identity, cpu_identity

# The environment switch tests use to make the engine child fail its self-test: "crash" or
# "garbage", then ":" and the setting that must be in force for the fault to strike
# ("extra_bufts", "mmap", "threads" or "always"). Read only in the engine process.
FAULT_ENV = "BASTION_ENGINE_FAULT"


@dataclass(frozen=True)
class Rung:
    name: str  # "default", "no-extra-bufts", "no-mmap", "one-thread", "baseline-kernels"
    options: LoadOptions


def safer_rungs(options: LoadOptions) -> list[Rung]:
    """``options``, then each safer setting added to the ones before."""
    rungs = [Rung("default", options)]
    current = options
    if current.use_extra_bufts:
        current = replace(current, use_extra_bufts=False)
        rungs.append(Rung("no-extra-bufts", current))
    if current.use_mmap:
        current = replace(current, use_mmap=False)
        rungs.append(Rung("no-mmap", current))
    if current.n_threads != 1:
        current = replace(current, n_threads=1)
        rungs.append(Rung("one-thread", current))
    if current.cpu_kernels != BASELINE:
        current = replace(current, cpu_kernels=BASELINE)
        rungs.append(Rung("baseline-kernels", current))
    return rungs


def describe(rung: Rung, crashed_variant: str | None, failure: str) -> str:
    """The sentence a user reads once: what is off now, and why."""
    if rung.name == "no-extra-bufts":
        if crashed_variant in HELD_BACK:
            what = "AMX kernels disabled on this CPU: they crash in this llama.cpp build"
        else:
            what = "llama.cpp's repacked CPU weights (extra buffer types) disabled on this CPU"
    elif rung.name == "no-mmap":
        what = "the model file is read into memory instead of mapped"
    elif rung.name == "one-thread":
        what = "the engine runs on one thread"
    else:
        what = "the engine runs llama.cpp's most conservative CPU kernels"
    return (
        f"{what} (the engine's self-test with the faster setting failed: {failure}). "
        "Answers may be slower; everything else works."
    )


def fault_for(options: LoadOptions) -> str | None:
    """The fault the test switch asks for under ``options`` ("crash", "garbage") or None."""
    value = os.environ.get(FAULT_ENV, "")
    kind, _, when = value.partition(":")
    if kind not in ("crash", "garbage"):
        return None
    strikes = {
        "always": True,
        "extra_bufts": options.use_extra_bufts,
        "mmap": options.use_mmap,
        "threads": options.n_threads != 1,
    }.get(when, False)
    return kind if strikes else None


class FallbackMemory:
    """Remembered rungs in a small JSON file: ``{key: {"rung": …, "note": …}}``."""

    def __init__(self, path: Path):
        self.path = path

    @staticmethod
    def key(model: Path, options: LoadOptions) -> str:
        try:
            stat = model.stat()
            file_id = f"{model}|{stat.st_size}|{stat.st_mtime_ns}"
        except OSError:
            file_id = str(model)
        chosen = f"{options.cpu_kernels}|{options.n_threads}"
        material = f"{file_id}|{chosen}|{build_identity()}|{cpu_identity()}"
        return hashlib.sha256(material.encode()).hexdigest()[:24]

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def recall(self, key: str) -> tuple[str, str] | None:
        """The remembered rung's name and note, or None."""
        entry = self._read().get(key)
        if isinstance(entry, dict) and isinstance(entry.get("rung"), str):
            return str(entry["rung"]), str(entry.get("note", ""))
        return None

    def remember(self, key: str, rung: str, note: str, model: str) -> None:
        data = self._read()
        data[key] = {"rung": rung, "note": note, "model": model}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".engine-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def in_force(self) -> list[tuple[str, str]]:
        """(model, note) of every remembered fallback, for ``bastion doctor``."""
        return [
            (str(entry.get("model", "?")), str(entry.get("note", "")))
            for entry in self._read().values()
            if isinstance(entry, dict)
        ]
