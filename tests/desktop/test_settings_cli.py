"""``bastion settings get|set`` and ``bastion models default``, over the same use cases as the
window (``bastion.desktop.configuration``), with a real settings file."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import pytest

from bastion.desktop import configuration
from bastion.desktop.cli import main
from bastion.desktop.configuration import SettingError
from bastion.desktop.paths import data_paths
from bastion.desktop.settings import Settings
from tests.models import gguf_factory as factory

EMBEDDED = "SmolLM2-135M-Instruct.Q4_1"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse refusing
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def saved() -> dict:
    return json.loads(data_paths().settings_file.read_text())


def test_get_prints_every_setting_or_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "settings", "get")
    assert code == 0
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert list(rows) == configuration.setting_keys()
    assert rows["n_ctx"] == "4096" and rows["default_model"] == "none"
    assert run(capsys, "settings", "get", "temperature")[1] == "0.2\n"
    code, out, _ = run(capsys, "settings", "get", "--json")
    assert json.loads(out)["max_tokens"] == 512


def test_set_checks_the_value_and_saves_it_privately(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "settings", "set", "n_ctx", "2048")
    assert (code, out) == (0, "n_ctx = 2048 (was 4096)\n")
    assert saved()["n_ctx"] == 2048
    path = data_paths().settings_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".settings-")] == []

    assert run(capsys, "settings", "set", "n_threads", "none")[1] == "n_threads = none\n"
    assert run(capsys, "settings", "set", "temperature", "0")[0] == 0
    assert saved()["temperature"] == 0.0 and run(capsys, "settings", "get", "n_ctx")[1] == "2048\n"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("n_ctx", "100", "n_ctx must be from 512 to 131072; 100 is out of range."),
    ("temperature", "hot", "temperature takes a number from 0 to 2; 'hot' is not one."),
    ("top_p", "nan", "top_p takes a number from 0 to 1; nan is not one."),
    ("max_tokens", "-5", "max_tokens must be from 1 to 32768; -5 is out of range."),
    ("n_gpu_layers", "none", "n_gpu_layers takes a whole number from 0 to 999; 'none' is not one."),
    ("cpu_kernels", " ", "cpu_kernels cannot be empty."),
])
def test_a_bad_value_is_refused_and_nothing_changes(key: str, value: str, message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "settings", "set", "max_file_mb", "50")
    before = saved()
    code, out, err = run(capsys, "settings", "set", key, value)
    assert (code, out) == (1, "")
    assert err == f"bastion: {message}\n"
    assert saved() == before


def test_an_unknown_key_is_refused_with_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "settings", "set", "colour", "blue")
    assert code == 2
    assert "invalid choice: 'colour'" in err and "'n_ctx'" in err and "'system_prompt'" in err
    assert not data_paths().settings_file.exists()
    with pytest.raises(SettingError, match=r"There is no setting 'colour'\. The settings are: "
                                           r"default_model, n_threads"):
        configuration.parse_setting("colour", "blue")


def test_models_default_prints_and_chooses_the_start_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "default")
    assert (code, out) == (0, f"{EMBEDDED}  (embedded)\n")

    tiny = factory.write_tiny_gguf(tmp_path / "tiny-chat.gguf")
    assert run(capsys, "models", "import", str(tiny))[0] == 0
    code, out, err = run(capsys, "models", "default", "tiny-chat")
    assert code == 0 and out.startswith("tiny-chat  (") and "is now tiny-chat" in err
    assert saved()["default_model"] == "tiny-chat"
    listing = run(capsys, "models", "list")[1].splitlines()
    assert next(r for r in listing if r.startswith("tiny-chat")).startswith("tiny-chat *")
    assert next(r for r in listing if r.startswith(EMBEDDED)).split()[1] != "*"
    lines = run(capsys, "models", "list", "--json")[1].splitlines()
    assert {m["id"]: m["default"] for m in map(json.loads, lines)} == {
        EMBEDDED: False, "tiny-chat": True}

    code, out, err = run(capsys, "models", "default", "nosuch")
    assert code == 1 and "No model called 'nosuch'" in err
    assert saved()["default_model"] == "tiny-chat"

    embedding = factory.write_embedding_gguf(tmp_path / "embed.gguf")
    code, _, err = run(capsys, "models", "default", str(embedding))
    assert code == 1 and "is an embedding model, not a chat model" in err

    assert run(capsys, "models", "default", "default")[0] == 0
    assert "default_model" not in saved()  # back to the default: not written
    assert Settings.load(data_paths().settings_file).default_model is None
    # `settings set default_model` goes through the same checks.
    assert run(capsys, "settings", "set", "default_model", "tiny-chat")[1] == \
        "default_model = tiny-chat (was none)\n"
    assert run(capsys, "settings", "set", "default_model", "nosuch")[0] == 1


def test_a_default_model_gone_since_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    Settings(default_model="vanished").save(data_paths().settings_file)
    code, out, err = run(capsys, "models", "default")
    assert code == 1 and out == "vanished  (not available)\n"
    assert "No model called 'vanished'" in err and "bastion models default NAME" in err


def test_save_settings_checks_every_value_and_keeps_the_default_model(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    current = Settings(default_model="chosen")
    saved_ = configuration.save_settings(current, path, Settings(n_ctx=2048, default_model="x"))
    assert saved_.default_model == "chosen" and Settings.load(path) == saved_
    with pytest.raises(SettingError, match="top_k must be from 0 to 1000"):
        configuration.save_settings(current, path, Settings(top_k=5000))
    assert Settings.load(path).n_ctx == 2048
    with pytest.raises(SettingError, match="bastion models default"):
        configuration.change_setting(current, path, "default_model", "x")


def test_only_changed_values_are_saved_so_new_defaults_reach_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    Settings(temperature=0.5, grounded_adapter=False).save(path)
    assert json.loads(path.read_text()) == {"temperature": 0.5, "grounded_adapter": False}
    # A folder saved by an older release holds every field; setting one back to its default
    # drops it from the file, so the next release's default applies to it.
    path.write_text(json.dumps({**dataclasses.asdict(Settings()), "grounded_adapter": False}))
    settings = configuration.change_setting(Settings.load(path), path, "grounded_adapter", True)
    assert settings.grounded_adapter is True and "grounded_adapter" not in json.loads(path.read_text())
    assert Settings.load(path) == Settings()


def test_values_parse_by_the_field_type() -> None:
    assert configuration.parse_setting("n_threads", " 4 ") == 4
    assert configuration.parse_setting("n_threads", "auto") is None
    assert configuration.parse_setting("repeat_penalty", "1") == 1.0
    assert configuration.parse_setting("system_prompt", "Be brief.\nCite.") == "Be brief.\nCite."
    assert configuration.check_setting("temperature", 1) == 1.0
    with pytest.raises(SettingError):
        configuration.check_setting("max_tokens", True)  # a bool is not a number here
    for key in configuration.setting_keys():  # every default is a value its setting takes
        configuration.check_setting(key, getattr(Settings(), key))
