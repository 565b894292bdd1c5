"""The command line refuses bad arguments before anything heavy loads.

Speed is measured in ``bench/cli_bench.py``; here the reason it is fast is asserted: which
modules a run imported before argparse answered.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bastion.desktop import cli
from bastion.desktop.cli import arg_types, chat_cmd
from bastion.desktop.cli import main as bastion_main
from bastion.desktop.configuration import setting_range
from bastion.desktop.grounding import MODES
from bastion.models.adapter_catalog import SCALE_LIMIT, parse_adapter_spec
from bastion.models.errors import ModelError

ML = ("torch", "llama_cpp", "PySide6", "sentence_transformers", "transformers")
# and what opening the chat database or the model catalog would import
HEAVY = (*ML, "sqlite_utils", "numpy", "gguf")

PROBE = """
import json, sys
from bastion.desktop.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exit:
    code = exit.code
heavy = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}))
"""


def probe(argv: list[str], heavy: tuple[str, ...] = HEAVY) -> tuple[int, list[str], str]:
    """Run ``bastion ARGV`` in a fresh interpreter: exit code, heavy modules imported, stderr."""
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(heavy)],
                            capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["code"], report["heavy"], result.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--help"], None),
    (["ask", "--help"], None),
    (["ask", "hello", "--max-tokens", "-5"], "--max-tokens: max_tokens must be from 1 to 32768"),
    (["ask", "hello", "--temperature", "7"], "--temperature: temperature must be from 0 to 2"),
    (["ask", "hello", "--adapter", "facts:9"], "must be a number from -4 to 4"),
    (["chat", "--chat", "0"], "--chat: 0 must be more than 0"),
    (["chats", "show", "x"], "'x' is not a whole number"),
    (["models", "frobnicate"], "invalid choice: 'frobnicate'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["ask", "hello", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["settings", "set", "colour", "blue"], "invalid choice: 'colour'"),
    (["finetune", "merge", "facts", "--scale", "5"], "--scale: 5 is out of range"),
    (["settings", "get"], None),  # answered, not only parsed, without the heavy parts
])
def test_refused_and_help_import_nothing_heavy(argv: list[str], message: str | None) -> None:
    code, heavy, err = probe(argv)
    assert heavy == []
    if message is None:
        assert code == 0
    else:
        assert code == 2
        assert message in err


def test_the_lab_refuses_before_any_ml_library_loads() -> None:
    # The lab's parser reads its defaults from the lab's session module (which imports the
    # chat database's modules), so only the machine-learning libraries are checked here.
    code, heavy, err = probe(["lab", "run", "q.jsonl", "--limit", "0"], ML)
    assert (code, heavy) == (2, [])
    assert "--limit: 0 must be more than 0" in err


def test_every_command_module_registers_the_help_the_top_level_shows() -> None:
    parser = cli.build_parser()  # every command module imported
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    shown = {action.dest: action.help for action in subparsers._choices_actions}
    assert shown == {name: help_line for name, (_, help_line) in cli.COMMANDS.items()}
    assert list(shown) == list(cli.COMMANDS)  # modules' commands in the listed order


def test_a_command_is_parsed_by_its_own_module_only() -> None:
    parser = cli.build_parser(["chats"])
    args = parser.parse_args(["chats", "delete", "3"])
    assert args.id == 3 and args.func.__module__ == "bastion.desktop.cli.chats_cmd"
    assert cli.chosen_command(["--help"]) is None
    assert cli.chosen_command(["search", "x"]) == "search"
    assert cli.chosen_command(["nosuch"]) is None


def test_bad_numbers_are_refused_with_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bastion_main(["ask", "hello", "--max-tokens", "many"])
    assert exit_.value.code == 2
    assert "max_tokens takes a whole number from 1 to 32768; 'many' is not one" in \
        capsys.readouterr().err


def test_copies_kept_light_agree_with_their_sources() -> None:
    assert chat_cmd.MODES == MODES
    assert arg_types.ADAPTER_SCALE_LIMIT == SCALE_LIMIT
    assert setting_range("max_tokens") == (1, 32768)
    for spec in ("facts", "facts:0.5", " facts : -4 ", "a:b:2", "x:4", "x:-4"):
        parsed = parse_adapter_spec(spec)
        assert arg_types.adapter_spec(spec) == (parsed.name, parsed.scale)
    for spec in ("", ":1", "x:5", "x:-4.5", "x:nan", "x:inf", "x:one"):
        with pytest.raises(ModelError):
            parse_adapter_spec(spec)
        with pytest.raises(Exception, match=r"adapter|scale"):
            arg_types.adapter_spec(spec)
