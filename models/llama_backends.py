"""Which llama.cpp CPU kernels this process runs: chosen at start from what the CPU supports.

Bastion's llama.cpp is built once for every x86-64 CPU (``packaging/bootstrap.py``:
``GGML_NATIVE=OFF``, ``GGML_BACKEND_DL``, ``GGML_CPU_ALL_VARIANTS``): the CPU backend is a set of
libraries, one per instruction-set level (``libggml-cpu-haswell.so``, ``…-zen4.so``, …). The
bindings never load them (they do not call ``ggml_backend_load_all``), so this module does, before
the first model: it asks each variant's own ``ggml_backend_score`` whether the running CPU can
execute it, and registers the best one with the very ``libggml`` that ``libllama`` links to (a
second copy of the library would keep its own, empty, registry).

Variants in ``HELD_BACK`` are skipped unless asked for by name: the Sapphire Rapids build's AMX
kernels crash at the first token in this llama.cpp (ggml-org/llama.cpp#20824).

Everything here runs in the engine process (and in ``bastion doctor``'s probe); the identity
helpers at the bottom read files only and are safe in the app process.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata as metadata
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadFailed

HELD_BACK: dict[str, str] = {
    "sapphirerapids": "its AMX kernels crash at the first token in this llama.cpp build",
}
# The last resort of the engine's self-test: the most conservative kernels this CPU can run.
BASELINE = "baseline"
AUTO = "auto"
VARIANT_PREFIX = "libggml-cpu-"
# CPU flags worth showing a person (from /proc/cpuinfo), in the order of the variants that use them.
SHOWN_FLAGS = (
    "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx_vnni", "avx512f", "avx512vbmi",
    "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
)


@dataclass(frozen=True)
class CpuBackend:
    """The CPU kernels in use in this process.

    Attributes:
        variant: the variant's name ("haswell", "zen4", …), or "built-in" for a build with one
            CPU backend linked in.
        scores: every variant this CPU can run, with ggml's score (higher is faster code).
        held_back: variants the CPU could run that were skipped, with the reason.
    """

    variant: str
    scores: dict[str, int]
    held_back: dict[str, str]


_loaded: CpuBackend | None = None


def variant_files() -> dict[str, Path]:
    """The CPU backend variants the installed llama-cpp-python carries, by name."""
    try:
        dist = metadata.distribution("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return {}
    found: dict[str, Path] = {}
    for entry in dist.files or ():
        name = Path(str(entry)).name
        if name.startswith(VARIANT_PREFIX) and name.endswith((".so", ".dll", ".dylib")):
            variant = name[len(VARIANT_PREFIX) :].rsplit(".", 1)[0]
            found[variant] = Path(str(dist.locate_file(entry))).resolve()
    return found


def _score(path: Path) -> int:
    """The variant's own verdict on this CPU: 0 = cannot run here."""
    handle = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
    try:
        score = getattr(handle, "ggml_backend_score", None)
        if score is None:
            return 0
        score.restype = ctypes.c_int
        score.argtypes = []
        return int(score())
    finally:
        _dlclose(handle)


def _dlclose(handle: ctypes.CDLL) -> None:
    import _ctypes

    close = getattr(_ctypes, "dlclose", None)
    if close is not None:
        close(handle._handle)


def _linked_ggml() -> ctypes.CDLL:
    """The libggml that libllama was loaded with (found in this process's memory map)."""
    import llama_cpp  # loads libllama, and with it libggml
    lib_dir = Path(llama_cpp.__file__).resolve().parent / "lib"
    candidates: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if Path(path).name.startswith("libggml.so"):
                    candidates.append(path)
    except OSError:
        pass
    if not candidates:  # not Linux: the bindings load lib/libggml.<ext> themselves
        candidates = [str(p) for p in sorted(lib_dir.glob("libggml.*"))]
    if not candidates:
        raise ModelLoadFailed(f"llama.cpp's libggml was not found in {lib_dir}: reinstall Bastion.")
    return ctypes.CDLL(candidates[0])


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence this process's C-level stderr (file descriptor 2) for the block."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_cpu_backend(prefer: str = AUTO) -> CpuBackend:
    """Register the best CPU kernels this CPU can run (once per process).

    Args:
        prefer: "auto" (the best variant not held back), "baseline" (the most conservative one
            this CPU runs) or a variant name (held-back ones included, at the user's risk).

    Raises:
        ModelLoadFailed: no variant runs on this CPU, or the named one is unknown or unsupported.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    files = variant_files()
    if not files:  # a build with its CPU backend linked in: nothing to choose
        _loaded = CpuBackend(variant="built-in", scores={}, held_back={})
        return _loaded
    ggml = _linked_ggml()
    scores = {name: s for name, path in files.items() if (s := _score(path)) > 0}
    if not scores:
        raise ModelLoadFailed(
            "None of llama.cpp's CPU kernels runs on this processor (it lacks even SSE2?)."
        )
    held_back = {n: why for n, why in HELD_BACK.items() if n in scores}
    if prefer == AUTO:
        order = sorted((n for n in scores if n not in held_back), key=scores.__getitem__, reverse=True)
    elif prefer == BASELINE:
        order = sorted(scores, key=scores.__getitem__)
    elif prefer in scores:
        order = [prefer]
        held_back.pop(prefer, None)
    else:
        known = ", ".join(sorted(scores, key=scores.__getitem__))
        raise ModelLoadFailed(
            f"The CPU kernels {prefer!r} do not run on this processor or are not in this build. "
            f"This processor runs: {known}. Set the engine's CPU kernels back to 'auto'."
        )
    load = ggml.ggml_backend_load
    load.restype = ctypes.c_void_p
    load.argtypes = [ctypes.c_char_p]
    for name in order:
        with _quiet_stderr():  # ggml prints "loaded CPU backend from …" on every start
            handle = load(str(files[name]).encode())
        if handle:
            _loaded = CpuBackend(variant=name, scores=scores, held_back=held_back)
            return _loaded
    raise ModelLoadFailed(f"llama.cpp could not load any of its CPU kernels ({', '.join(order)}).")


# -- identity: what a remembered engine setting is valid for --------------------------------------


def cpu_flags() -> list[str]:
    """The CPU's instruction-set flags, as Linux names them (empty where unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_identity() -> str:
    """Same processor model and features → same identity."""
    material = cpu_model() + "\n" + " ".join(sorted(cpu_flags()))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def build_identity() -> str:
    """The installed llama.cpp build: its version and the hashes of every file pip recorded."""
    try:
        dist = metadata.distribution("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "none"
    record = dist.read_text("RECORD") or ""
    digest = hashlib.sha256(f"{dist.version}\n{record}".encode())
    return f"{dist.version}-{digest.hexdigest()[:12]}"


def probe() -> dict[str, object]:
    """What ``bastion doctor`` shows: the CPU, the kernels chosen, and llama.cpp's own summary."""
    backend = load_cpu_backend()
    import llama_cpp

    flags = set(cpu_flags())
    return {
        "cpu": cpu_model(),
        "cpu_flags": [flag for flag in SHOWN_FLAGS if flag in flags],
        "variant": backend.variant,
        "runnable": sorted(backend.scores, key=backend.scores.__getitem__),
        "held_back": backend.held_back,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace"),
    }


if __name__ == "__main__":  # run by ``bastion doctor`` in a child, where a native crash costs little
    import json

    print(json.dumps(probe()))
