"""The code's own rules: layering, lint, and strict typing of all of it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "models": ("PySide6", "shiboken6", "bastion.desktop", "bastion.store", "desktop", "store"),
    "store": ("PySide6", "shiboken6", "bastion.desktop", "bastion.models", "desktop", "models"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_core_packages_import_neither_qt_nor_desktop_nor_each_other(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[package]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_qt_lives_only_in_desktop_gui() -> None:
    offenders = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"tests", "bench", "packaging", ".venv"} or rel.parts[:2] == ("desktop", "gui"):
            continue
        if any(n.split(".")[0] in {"PySide6", "shiboken6"} for n in imported_modules(path)):
            offenders.append(str(rel))
    assert offenders == []


def test_ruff_passes() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is part of the test environment"
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_path_names_the_code_as_it_is_installed() -> None:
    # pyproject's mypy_path: without these links every bastion.* import would be unresolved.
    links = ROOT / ".mypy_path" / "bastion"
    assert {p.name: p.resolve() for p in links.iterdir()} == {
        name: (ROOT / name).resolve() for name in ("desktop", "models", "store")}


def test_mypy_strict_passes_for_desktop_models_and_store() -> None:
    # By their installed names, so imports between the packages carry real types.
    packages = [arg for name in ("desktop", "models", "store") for arg in ("-p", f"bastion.{name}")]
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *packages],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
