"""Conversations → token ids with a mask of the tokens the model learns, and batches of them.

A conversation is rendered with the base model's own chat template exactly as the engine renders
prompts (same sandboxed formatter, same fallback to ChatML, same special-token neutralising), so
the adapter learns the format it will be used with. The model learns the assistant turns only:
each turn's span is found by rendering the conversation up to the turn with the generation prompt
(where the answer starts) and up to the end of the turn (where it ends), and the tokens whose
text starts inside a span are the targets — the reply and the template's end-of-turn marker.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .chat_template import (
    DEFAULT_TEMPLATE,
    RENDER_BUDGET_S,
    SpecialTokenNeutraliser,
    TemplateError,
    choose_template,
    neutralise_messages,
    time_limit,
)
from .finetune_data import ChatExample, Message
from .finetune_types import TrainingDataError


@dataclass(frozen=True)
class TokenizedExample:
    ids: list[int]
    targets: list[bool]  # targets[t]: token t is learnt (predicted from the tokens before it)
    kind: str

    @property
    def n_targets(self) -> int:
        return sum(self.targets)


class ConversationEncoder:
    """Renders and tokenizes conversations for one base model.

    Args:
        tokenizer: a Hugging Face fast tokenizer (offsets are needed).
        gguf_template: the GGUF's ``tokenizer.chat_template`` (None: ChatML, as the engine does).
        add_bos: whether the model expects a BOS token first (GGUF ``tokenizer.ggml.add_bos_token``).
    """

    def __init__(self, tokenizer: Any, gguf_template: str | None, *, add_bos: bool) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.tokenizer = tokenizer
        bos = tokenizer.bos_token or ""
        eos = tokenizer.eos_token or ""
        self.choice, _ = choose_template(gguf_template, bos_token=bos, eos_token=eos)
        template = self.choice.template if self.choice.source == "gguf" else DEFAULT_TEMPLATE
        self._open = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        self._closed = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos,
                                           add_generation_prompt=False)
        self.bos_text = bos
        self.bos_id: int | None = tokenizer.bos_token_id if add_bos and bos else None
        added = [t.content for t in tokenizer.added_tokens_decoder.values()]
        self.neutralise = SpecialTokenNeutraliser(added)

    def _render(self, messages: Sequence[Message], generation_prompt: bool) -> str:
        formatter = self._open if generation_prompt else self._closed
        try:
            with time_limit(RENDER_BUDGET_S):
                prompt: str = formatter(messages=list(messages)).prompt  # type: ignore[arg-type]
        except TemplateError:
            raise
        except Exception as error:  # the template raising on this conversation is data
            raise TemplateError(f"the chat template failed: {type(error).__name__}: {error}") from error
        return prompt

    def spans(self, messages: Sequence[Message]) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and the character spans of its assistant turns."""
        full = self._render(messages, generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            start = self._render(messages[:i], generation_prompt=True)
            end = full if i == len(messages) - 1 else self._render(messages[: i + 1], False)
            if not (end.startswith(start) and full.startswith(end)):
                # Some templates render earlier turns differently (e.g. dropping reasoning);
                # then only the last reply can be located for sure.
                spans = []
                if i == len(messages) - 1 and full.startswith(start):
                    spans.append((len(start), len(full)))
                continue
            spans.append((len(start), len(end)))
        return full, spans

    def encode(self, example: ChatExample) -> TokenizedExample:
        """Token ids and target mask of one conversation.

        Raises:
            TrainingDataError: the template cannot render it, or no reply could be located.
        """
        where = f"line {example.line}" if example.line else "an example"
        safe = neutralise_messages(example.messages, self.neutralise)
        try:
            text, spans = self.spans(safe)
        except TemplateError as error:
            raise TrainingDataError(f"The conversation at {where} cannot be rendered: {error}.",
                                    line=example.line) from error
        if not spans:
            raise TrainingDataError(
                f"The model's chat template renders the conversation at {where} in a way whose "
                "replies cannot be located; train on single question/answer pairs.", line=example.line)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(encoded["input_ids"])
        targets = [any(a <= start < b for a, b in spans) for start, _ in encoded["offset_mapping"]]
        if self.bos_id is not None and not text.startswith(self.bos_text):
            ids.insert(0, self.bos_id)
            targets.insert(0, False)
        return TokenizedExample(ids, targets, example.kind)


def token_batches(examples: Sequence[TokenizedExample], *, batch_tokens: int, max_examples: int,
                  seed: int) -> list[list[int]]:
    """Group example indices into batches of similar length (little padding), each at most
    ``batch_tokens`` tokens once padded and ``max_examples`` examples. Equal lengths are ordered
    by ``seed``; the groups are the same for every epoch (see ``epoch_order``).
    """
    rng = random.Random(seed)
    ties = [rng.random() for _ in examples]
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].ids), ties[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending length: the newest example is the longest of its batch
        n = len(examples[i].ids)
        if current and (n * (len(current) + 1) > batch_tokens or len(current) >= max_examples):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def epoch_order(n_batches: int, seed: int, epoch: int) -> list[int]:
    """The order of the batches in ``epoch``: shuffled, reproducibly (a resumed run repeats it)."""
    order = list(range(n_batches))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order
