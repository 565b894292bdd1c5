"""Hostile and odd model files through the real engine: templates, architectures, crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.models.engine import Engine
from bastion.models.engine_types import ChatDelta, ChatDone, LoadOptions, Sampling
from bastion.models.errors import EngineCrashed, ModelLoadFailed
from tests.models.gguf_factory import copy_with_metadata
from tests.store.hostile_parsers import RunsOnUnpickle

pytestmark = pytest.mark.slow

OPTIONS = LoadOptions(n_ctx=512, n_threads=2)
SHORT = Sampling(max_tokens=8, temperature=0.0)


def answer(engine: Engine, text: str = "Hello") -> str:
    out = ""
    for event in engine.chat([{"role": "user", "content": text}], SHORT):
        if isinstance(event, ChatDelta):
            out += event.text
        else:
            assert isinstance(event, ChatDone)
    return out


def test_ssti_template_never_runs_and_the_default_template_is_used(smollm2_path: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    template = (
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(canary) + "').read() }}"
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    model = copy_with_metadata(smollm2_path, tmp_path / "ssti.gguf", set_str={"tokenizer.chat_template": template})
    with Engine() as engine:
        info = engine.load(model, OPTIONS)
        assert info.template_source == "default"
        assert info.template_warning and "not used" in info.template_warning
        answer(engine)
    assert not canary.exists()


def test_looping_template_falls_back_within_its_budget(smollm2_path: Path, tmp_path: Path) -> None:
    template = ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
                "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    model = copy_with_metadata(smollm2_path, tmp_path / "loop.gguf", set_str={"tokenizer.chat_template": template})
    with Engine() as engine:
        info = engine.load(model, OPTIONS)
        assert info.template_source == "default" and "longer than" in (info.template_warning or "")
        assert answer(engine)


def test_missing_template_falls_back_with_a_warning(smollm2_path: Path, tmp_path: Path) -> None:
    model = copy_with_metadata(smollm2_path, tmp_path / "bare.gguf", drop={"tokenizer.chat_template"})
    with Engine() as engine:
        info = engine.load(model, OPTIONS)
        assert info.template_source == "default" and "no chat template" in (info.template_warning or "")
        assert answer(engine)


def test_unknown_architecture_is_refused_and_the_previous_model_stays(smollm2_path: Path, tmp_path: Path) -> None:
    alien = copy_with_metadata(smollm2_path, tmp_path / "alien.gguf", set_str={"general.architecture": "zorblax"})
    with Engine() as engine:
        engine.load(smollm2_path, OPTIONS)
        with pytest.raises((ModelLoadFailed, EngineCrashed)) as refused:
            engine.load(alien, OPTIONS)
        assert "alien.gguf" in str(refused.value)
        assert engine.info is not None and engine.info.path == smollm2_path.resolve()
        assert answer(engine)  # the previous model still answers


def test_model_file_deleted_while_loaded_keeps_working(smollm2_path: Path, tmp_path: Path) -> None:
    copy = copy_with_metadata(smollm2_path, tmp_path / "doomed.gguf")
    with Engine() as engine:
        engine.load(copy, OPTIONS)
        copy.unlink()  # the mapping keeps the old inode alive
        assert answer(engine)


def test_the_parent_never_unpickles_what_an_engine_sends(tmp_path: Path) -> None:
    import pickle

    from bastion.models.engine import _decode

    marker = tmp_path / "pwned"
    assert _decode(pickle.dumps({"type": "done", "x": RunsOnUnpickle(str(marker))})) is None
    assert _decode(b"[1, 2]") is None  # JSON, but not a message object
    assert _decode(b'{"type": "delta", "text": "\\udcff", "tokens": 1}') == {
        "type": "delta", "text": "\udcff", "tokens": 1}
    assert not marker.exists()
