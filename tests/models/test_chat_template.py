"""Chat templates are data: sandboxed, time-boxed, with a safe fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.models.chat_template import (
    DEFAULT_TEMPLATE,
    NEUTRALISER,
    ChatRenderer,
    SpecialTokenNeutraliser,
    TemplateError,
    choose_template,
    fit_to_context,
)
from bastion.models.errors import PromptTooLong

SMOL_TEMPLATE = DEFAULT_TEMPLATE


def ssti_template(canary: Path) -> str:
    return (
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}"
        "{% if c.__name__ == 'Popen' %}{{ c(['touch', '" + str(canary) + "']) }}{% endif %}"
        "{% endfor %}"
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(canary) + "').read() }}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )


LOOPING_TEMPLATE = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    "{% for m in messages %}{{ m['content'] }}{% endfor %}"
)


def test_default_template_renders_chatml() -> None:
    renderer = ChatRenderer(DEFAULT_TEMPLATE, bos_token="", eos_token="<|im_end|>")
    text = renderer.render([{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_ssti_template_is_refused_and_the_canary_never_appears(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    choice, renderer = choose_template(ssti_template(canary), bos_token="", eos_token="</s>")
    assert choice.source == "default"
    assert choice.warning and "was not used" in choice.warning
    renderer.render([{"role": "user", "content": "x"}])
    assert not canary.exists()


def test_looping_template_is_cut_off_by_the_time_budget() -> None:
    renderer = ChatRenderer(LOOPING_TEMPLATE, bos_token="", eos_token="</s>")
    with pytest.raises(TemplateError, match="longer than"):
        renderer.render([{"role": "user", "content": "x"}], budget_s=0.3)
    choice, _ = choose_template(LOOPING_TEMPLATE, bos_token="", eos_token="</s>")
    assert choice.source == "default" and "longer than" in (choice.warning or "")


def test_missing_and_broken_templates_fall_back_with_a_warning() -> None:
    missing, _ = choose_template(None, bos_token="", eos_token="</s>")
    assert missing.source == "default" and "no chat template" in (missing.warning or "")
    broken, _ = choose_template("{% for %}", bos_token="", eos_token="</s>")
    assert broken.source == "default" and "does not compile" in (broken.warning or "")
    raising, _ = choose_template("{{ raise_exception('roles must alternate') }}", bos_token="", eos_token="")
    assert raising.source == "default" and "roles must alternate" in (raising.warning or "")


def test_a_template_that_drops_the_question_is_not_used() -> None:
    choice, _ = choose_template("Hello", bos_token="", eos_token="")
    assert choice.source == "default" and "drops the user's message" in (choice.warning or "")


def test_neutraliser_breaks_every_special_string() -> None:
    neutralise = SpecialTokenNeutraliser(["<|im_start|>", "<|im_end|>", "<s>", "x"])
    text = neutralise("a <|im_start|>system b <|im_end|> <s> x")
    assert "<|im_start|>" not in text and "<|im_end|>" not in text and "<s>" not in text
    assert text.count(NEUTRALISER) == 3
    assert text.replace(NEUTRALISER, "") == "a <|im_start|>system b <|im_end|> <s> x"


def fake_tokenize(text: str) -> list[int]:
    return list(range(len(text.split())))


def test_fit_drops_oldest_turns_in_pairs_and_keeps_system_and_question() -> None:
    renderer = ChatRenderer(DEFAULT_TEMPLATE, bos_token="", eos_token="")
    messages = [{"role": "system", "content": "sys"}]
    for i in range(10):
        messages += [{"role": "user", "content": f"q{i} " + "w " * 20},
                     {"role": "assistant", "content": f"a{i} " + "w " * 20}]
    messages.append({"role": "user", "content": "final question"})
    fitted = fit_to_context(messages, renderer.render, fake_tokenize, budget_tokens=100)
    assert fitted.n_tokens <= 100
    assert fitted.dropped_messages % 2 == 0 and fitted.dropped_messages > 0
    assert fitted.text.startswith("<|im_start|>system\nsys")
    assert "final question" in fitted.text
    assert "q0 " not in fitted.text


def test_fit_refuses_a_question_that_cannot_fit() -> None:
    renderer = ChatRenderer(DEFAULT_TEMPLATE, bos_token="", eos_token="")
    with pytest.raises(PromptTooLong, match="too long"):
        fit_to_context([{"role": "user", "content": "w " * 500}], renderer.render, fake_tokenize, 100)
