"""``bastion serve``: its token, its arguments (no model is loaded here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bastion.desktop.cli import main


def test_show_token_makes_the_token_once_and_prints_only_it(
        bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--show-token"]) == 0
    first = capsys.readouterr().out.strip()
    token_file = bastion_home / "api-token"
    assert first == token_file.read_text().strip() and len(first) >= 32
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert main(["serve", "--show-token"]) == 0
    assert capsys.readouterr().out.strip() == first  # kept, not made again


@pytest.mark.parametrize("argv", [["serve", "--port", "70000"], ["serve", "--port", "http"],
                                  ["serve", "--queue", "-1"]])
def test_bad_arguments_are_refused_before_anything_loads(
        argv: list[str], bastion_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "serve: error" in capsys.readouterr().err
    assert not (bastion_home / "api-token").exists()
