"""Chat templates: render a conversation into the model's prompt text, safely.

A GGUF carries its own Jinja chat template. Templates are data from the model file, so they render
in llama-cpp-python's sandboxed Jinja formatter and under a wall-clock budget; at load the template
is test-rendered, and a missing or failing one falls back to ``DEFAULT_TEMPLATE`` (ChatML) with a
warning the user sees. Text from users and documents never becomes control tokens: every special
token string of the loaded vocabulary is broken with a zero-width joiner before templating.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import ModelError, PromptTooLong

# ChatML, the format SmolLM2, Qwen and many fine-tunes use; documented in the README.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

RENDER_BUDGET_S = 2.0
# Inserted inside a special-token string so the tokenizer sees plain text, not a control token.
NEUTRALISER = "\u2060"  # WORD JOINER: invisible, and never part of a special token

Message = dict[str, str]

# A conversation every sane template can render; used for the test render at load.
PROBE_CONVERSATION: list[Message] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello."},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What is 2 + 2?"},
]


class TemplateError(ModelError):
    """The chat template failed to render (error, forbidden operation, or over its time budget)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TemplateError if the block runs longer than ``seconds``.

    Uses SIGALRM, which interrupts pure-Python loops such as a Jinja template spinning in nested
    ``range``; only possible in a process's main thread on POSIX. The engine renders templates in
    the main thread of its own process, so the budget holds there; elsewhere the block runs
    unguarded (tests of pure rendering).
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise TemplateError(f"the chat template took longer than {seconds:g} s to render")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class SpecialTokenNeutraliser:
    """Breaks every special-token string (``<|im_start|>``…) found in untrusted text."""

    def __init__(self, special_strings: Iterable[str]):
        # Only strings of 2+ characters can be broken, and only those matter: a single
        # character is no control sequence a person could type by accident or on purpose.
        strings = sorted({s for s in special_strings if len(s) >= 2}, key=len, reverse=True)
        self.strings = strings
        self._pattern = re.compile("|".join(re.escape(s) for s in strings)) if strings else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: m.group(0)[0] + NEUTRALISER + m.group(0)[1:], text)


@dataclass(frozen=True)
class TemplateChoice:
    """The template the engine will use, and why."""

    template: str
    source: str  # "gguf" or "default"
    warning: str | None = None


class ChatRenderer:
    """Renders messages with one template, sandboxed and time-boxed."""

    def __init__(self, template: str, *, bos_token: str, eos_token: str):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=eos_token, bos_token=bos_token
            )
        except Exception as error:  # a syntax error in the template is data, not a bug
            raise TemplateError(f"the chat template does not compile: {error}") from error
        self.bos_token = bos_token

    def render(self, messages: Sequence[Message], budget_s: float = RENDER_BUDGET_S) -> str:
        """Render ``messages`` followed by the assistant's generation prompt."""
        try:
            with time_limit(budget_s):
                response = self._formatter(messages=list(messages))  # type: ignore[arg-type]
        except TemplateError:
            raise
        except Exception as error:  # SecurityError, UndefinedError, raise_exception(...)
            raise TemplateError(f"the chat template failed: {type(error).__name__}: {error}") from error
        prompt: str = response.prompt
        return prompt


def choose_template(
    gguf_template: str | None, *, bos_token: str, eos_token: str
) -> tuple[TemplateChoice, ChatRenderer]:
    """Pick the GGUF's own template if it passes a test render, else the default, with a warning."""
    if not gguf_template:
        warning = "This model has no chat template; Bastion uses its default (ChatML) format."
    else:
        try:
            renderer = ChatRenderer(gguf_template, bos_token=bos_token, eos_token=eos_token)
            prompt = renderer.render(PROBE_CONVERSATION)
            if "What is 2 + 2?" not in prompt:
                raise TemplateError("the chat template drops the user's message")
            return TemplateChoice(gguf_template, "gguf"), renderer
        except TemplateError as error:
            warning = (
                f"This model's chat template was not used ({error}); Bastion uses its default "
                "(ChatML) format. Answers may be worse: use a model with a working template."
            )
    renderer = ChatRenderer(DEFAULT_TEMPLATE, bos_token=bos_token, eos_token=eos_token)
    return TemplateChoice(DEFAULT_TEMPLATE, "default", warning), renderer


def neutralise_messages(
    messages: Sequence[Message], neutralise: Callable[[str], str]
) -> list[Message]:
    return [{**m, "content": neutralise(m.get("content", ""))} for m in messages]


@dataclass(frozen=True)
class FittedPrompt:
    text: str
    n_tokens: int
    tokens: list[int]
    dropped_messages: int


def fit_to_context(
    messages: Sequence[Message],
    render: Callable[[Sequence[Message]], str],
    tokenize: Callable[[str], list[int]],
    budget_tokens: int,
) -> FittedPrompt:
    """Render the conversation, dropping the oldest turns until it fits ``budget_tokens``.

    System messages and the newest message are always kept. Turns are dropped oldest-first, a
    user message together with the assistant replies that follow it, so roles keep alternating
    (some templates refuse anything else).
    """
    system = [m for m in messages if m.get("role") == "system"]
    rest = [m for m in messages if m.get("role") != "system"]
    if not rest:
        raise ModelError("There is no message to answer: type a question first.")
    dropped = 0
    while True:
        text = render([*system, *rest])
        tokens = tokenize(text)
        if len(tokens) <= budget_tokens:
            return FittedPrompt(text, len(tokens), tokens, dropped)
        if len(rest) <= 1:
            raise PromptTooLong(
                f"The message is too long for this model: it needs {len(tokens)} tokens with the "
                f"system prompt, and {budget_tokens} are available after reserving room for the "
                "answer. Shorten it, reduce the answer length, or choose a larger context size."
            )
        cut = 1
        while cut < len(rest) - 1 and rest[cut].get("role") != "user":
            cut += 1
        dropped += cut
        rest = rest[cut:]


def plain_messages(messages: Iterable[Any]) -> list[Message]:
    """Validate and copy messages coming over the process boundary."""
    out: list[Message] = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ModelError("A chat message must have a role and text content.")
        content = m.get("content", "")
        if not isinstance(content, str):
            raise ModelError("A chat message's content must be text.")
        out.append({"role": m["role"], "content": content})
    return out
