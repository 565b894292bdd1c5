"""``bastion ask --adapter NAME[:SCALE]`` end to end: an imported adapter changes the answer, at
scale 0 it answers as the base, and each stored answer records its adapters and scales."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.store.chats import ChatStore
from tests.models.lora_factory import random_adapter

pytestmark = pytest.mark.slow

QUESTION = ["ask", "Name three colours of the rainbow.", "--max-tokens", "16", "--temperature", "0"]


def ask(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main([*QUESTION, *extra])
    out, err = capsys.readouterr()
    return code, out.split("\n\nSources:")[0].strip(), err


def test_ask_with_an_imported_adapter(
    bastion_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["adapters", "import", str(random_adapter(tmp_path / "vivid.gguf", strength=0.2))]) == 0
    capsys.readouterr()
    code, base, _ = ask(capsys)
    assert code == 0 and base
    code, adapted, _ = ask(capsys, "--adapter", "vivid")
    assert code == 0 and adapted != base
    code, at_zero, _ = ask(capsys, "--adapter", "vivid:0")
    assert code == 0 and at_zero == base

    store = ChatStore(bastion_home / "bastion.db")
    answers = [store.messages(chat.id)[-1] for chat in reversed(store.chats())]
    assert [a.meta["adapters"] for a in answers] == [
        [], [{"name": "vivid", "scale": 1.0}], [{"name": "vivid", "scale": 0.0}]]
    store.close()


def test_a_bad_adapter_is_refused_before_the_model_loads(
    bastion_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):  # argparse: the scale is checked as the command is read
        main([*QUESTION, "--adapter", "vivid:9"])
    assert "must be a number from -4 to 4" in capsys.readouterr().err
    code, _, err = ask(capsys, "--adapter", "nothing-by-this-name")
    assert code == 1 and "nothing-by-this-name" in err
    assert not (bastion_home / "bastion.db").exists() or not ChatStore(bastion_home / "bastion.db").chats()
