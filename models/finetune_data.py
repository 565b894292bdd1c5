"""Training data for fine-tuning: chat-format JSONL, and "grounded" examples built from Q/A pairs.

Chat JSONL is what ``bastion chats export --format jsonl`` writes (and what TRL, Axolotl and
llama.cpp's examples read): one ``{"messages": [{"role", "content"}, …]}`` object per line. Every
line is checked; the first bad one is reported by number with the reason.

Grounded examples follow RAFT (Zhang et al., 2024): each question is shown with the passages that
hold its answer mixed among distractor passages, in the prompt format the app uses for grounded
answers, and a share of the questions is shown with distractors only, the target being the
abstention sentence. That share is a parameter, balanced exactly (not drawn per example): with
half the examples abstaining, a model learnt to abstain on 50 of 60 answerable questions.

Passages arrive as plain data: retrieval is the caller's job. So is the wording: the instruction,
header and abstention sentence are passed in (``GroundedPrompt``), so the training prompts stay
the very ones the application sends.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .file_hashes import fsync_dir
from .finetune_types import TrainingDataError

Message = dict[str, str]
ExampleKind = Literal["chat", "grounded", "abstention"]
ROLES = ("system", "user", "assistant")
KINDS: tuple[ExampleKind, ...] = ("chat", "grounded", "abstention")

MAX_FILE_BYTES = 1 << 30
MAX_LINE_BYTES = 4 << 20
MAX_MESSAGES = 512
MAX_REPORTED_PROBLEMS = 5


@dataclass(frozen=True)
class ChatExample:
    """One training conversation; the model learns every assistant turn of it."""

    messages: tuple[Message, ...]
    kind: ExampleKind = "chat"
    line: int | None = None  # where it came from in a JSONL file

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"messages": [dict(m) for m in self.messages]}
        if self.kind != "chat":
            data["kind"] = self.kind
        return data


def check_messages(value: object) -> tuple[Message, ...]:
    """The conversation in a JSONL object, or ValueError saying what is wrong with it.

    Rules: a "messages" list of {"role", "content"} objects with text content; roles are system
    (first only), then user and assistant alternating, starting with user; at least one assistant
    reply, none empty; the conversation ends with an assistant turn (there is nothing to learn
    after the last answer).
    """
    if not isinstance(value, dict):
        raise ValueError("the line is not a JSON object")
    messages = value.get("messages")
    if not isinstance(messages, list):
        raise ValueError('there is no "messages" list')
    if not messages:
        raise ValueError("the conversation is empty")
    if len(messages) > MAX_MESSAGES:
        raise ValueError(f"the conversation has more than {MAX_MESSAGES} messages")
    kind = value.get("kind", "chat")
    if kind not in KINDS:
        raise ValueError(f'"kind" must be one of {", ".join(KINDS)}')
    out: list[Message] = []
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError(f'message {i} is not an object with a "role"')
        role, content = m["role"], m.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i} has the role {role!r}; roles are system, user, assistant")
        if not isinstance(content, str):
            raise ValueError(f"message {i} ({role}) has no text content")
        if role == "system" and i != 1:
            raise ValueError(f"message {i} is a system message; only the first may be one")
        if role != "system" and not content.strip():
            raise ValueError(f"message {i} ({role}) is empty")
        out.append({"role": role, "content": content})
    turns = [m["role"] for m in out if m["role"] != "system"]
    for j, role in enumerate(turns):
        expected = "user" if j % 2 == 0 else "assistant"
        if role != expected:
            offset = len(out) - len(turns)
            raise ValueError(f"message {j + 1 + offset} should be from the {expected} "
                             f"(user and assistant turns alternate, starting with the user)")
    if not turns or turns[-1] != "assistant":
        raise ValueError("the conversation does not end with an assistant reply")
    return tuple(out)


def parse_chat_jsonl(lines: Iterable[bytes]) -> list[ChatExample]:
    """Check every line and return the conversations.

    Blank lines are skipped; a UTF-8 byte-order mark on the first line is accepted.

    Raises:
        TrainingDataError: naming the first bad line and why (and how many others are bad).
    """
    examples: list[ChatExample] = []
    problems: list[tuple[int, str]] = []
    bad = 0
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(f"the line is longer than {MAX_LINE_BYTES >> 20} MiB")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("the line is not UTF-8 text") from None
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"the line is not valid JSON ({error.msg} at column "
                                 f"{error.colno})") from None
            messages = check_messages(value)
        except ValueError as error:
            bad += 1
            if len(problems) < MAX_REPORTED_PROBLEMS:
                problems.append((number, str(error)))
            continue
        examples.append(ChatExample(messages, kind=value.get("kind", "chat"), line=number))
    if problems:
        first_line, why = problems[0]
        more = f" ({bad - 1} more bad lines: {', '.join(str(n) for n, _ in problems[1:])}…)" if bad > 1 else ""
        raise TrainingDataError(
            f"Line {first_line} of the training data is unusable: {why}.{more} Each line must be "
            '{"messages": [{"role": "user", "content": …}, {"role": "assistant", "content": …}]}.',
            line=first_line,
        )
    if not examples:
        raise TrainingDataError("The training data holds no conversations: the file is empty.")
    return examples


def _lines(path: Path, digest: Any = None) -> Iterator[bytes]:
    # A user file: no symlink following, no blocking on a FIFO, a regular file of bounded size.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise TrainingDataError(f"The training data {path} cannot be opened: "
                                f"{error.strerror or error}.") from error
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise TrainingDataError(f"The training data {path} is not a regular file.")
        if st.st_size > MAX_FILE_BYTES:
            raise TrainingDataError(f"The training data {path} is larger than "
                                    f"{MAX_FILE_BYTES >> 30} GiB; split it.")
        while line := file.readline(MAX_LINE_BYTES + 1):
            if digest is not None:
                digest.update(line)
            yield line


def read_chat_jsonl(path: Path) -> list[ChatExample]:
    """Read and check a chat-format JSONL file (see ``parse_chat_jsonl``)."""
    return parse_chat_jsonl(_lines(Path(path)))


def read_chat_jsonl_hashed(path: Path) -> tuple[list[ChatExample], str]:
    """``read_chat_jsonl`` and the SHA-256 of the very bytes it read (for the training record)."""
    digest = hashlib.sha256()
    examples = parse_chat_jsonl(_lines(Path(path), digest))
    return examples, digest.hexdigest()


def write_chat_jsonl(path: Path, examples: Iterable[ChatExample]) -> int:
    """Write examples as JSONL (private file, atomic); returns the number written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            for example in examples:
                file.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
                count += 1
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return count


def split_held_out(examples: Sequence[ChatExample], fraction: float = 0.1, *, seed: int = 0,
                   max_held_out: int = 64) -> tuple[list[ChatExample], list[ChatExample]]:
    """Split off a held-out share, stratified by kind so abstentions are held out in proportion.

    Fewer than 5 examples: nothing is held out (there is too little to learn from already).
    Returns ``(train, held_out)``; the same inputs and seed give the same split.
    """
    if fraction <= 0 or len(examples) < 5:
        return list(examples), []
    want = min(max_held_out, max(1, round(len(examples) * fraction)))
    rng = random.Random(seed)
    held: set[int] = set()
    for kind in KINDS:
        idx = [i for i, e in enumerate(examples) if e.kind == kind]
        take = round(want * len(idx) / len(examples))
        held.update(rng.sample(idx, min(take, len(idx))))
    rest = [i for i in range(len(examples)) if i not in held]
    rng.shuffle(rest)
    while len(held) < want and rest:
        held.add(rest.pop())
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


# -- grounded examples (RAFT) --------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """A passage of a document, as retrieval returns it."""

    text: str
    source: str  # the document's path or name; its file name is shown
    page: int | None = None


@dataclass(frozen=True)
class QAPair:
    """A question, its answer, the passages that hold the answer, and (optionally) passages
    retrieved for the question that do not hold it, the best distractors there are.

    An unanswerable pair (``answerable=False``: the documents do not hold its answer, like SQuAD
    2.0's impossible questions) has no answer and no passages; its retrieved ``distractors`` are
    shown and the target is the abstention sentence.
    """

    question: str
    answer: str
    passages: tuple[Passage, ...]
    distractors: tuple[Passage, ...] = ()
    answerable: bool = True
    evidence: tuple[str, ...] = ()  # strings marking a passage as holding the answer (default: it)


@dataclass(frozen=True)
class GroundedPrompt:
    """The prompt format of grounded answers; the application passes its own wording.

    The defaults of the templates reproduce the application's layout: a numbered, delimited
    passage per block, then the question.
    """

    instruction: str
    passages_header: str
    abstention: str
    system_prompt: str | None = None
    passage_template: str = "[{n}] ({where})\n{text}\n[end of passage {n}]"
    user_template: str = "{instruction}\n\n{header}\n\n{passages}\n\nQuestion: {question}"
    citation_template: str = " [{n}]"
    leading_citation_template: str = "[{n}] "  # the citation when it comes first

    def passage(self, n: int, passage: Passage) -> str:
        where = passage.source.rsplit("/", 1)[-1]
        if passage.page is not None:
            where += f", page {passage.page}"
        return self.passage_template.format(n=n, where=where, text=passage.text.strip())

    def user_message(self, question: str, passages: Sequence[Passage]) -> str:
        blocks = "\n\n".join(self.passage(i, p) for i, p in enumerate(passages, start=1))
        return self.user_template.format(instruction=self.instruction, header=self.passages_header,
                                         passages=blocks, question=question)


@dataclass
class GroundedStats:
    """What ``grounded_examples`` built."""

    answerable: int = 0
    abstention: int = 0
    short_of_distractors: int = 0  # examples that got fewer distractors than asked
    unanswerable_left_out: int = 0  # unanswerable pairs beyond their half of the abstention share
    skipped: list[str] = field(default_factory=list)  # questions left out, with the reason


_CITED = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def grounded_examples(
    pairs: Sequence[QAPair],
    prompt: GroundedPrompt,
    *,
    distractor_pool: Sequence[Passage] = (),
    distractors: int = 3,
    abstention_fraction: float = 0.2,
    cite: bool = True,
    citation_first: bool = False,
    seed: int = 0,
    stats: GroundedStats | None = None,
) -> list[ChatExample]:
    """Turn Q/A pairs into RAFT training conversations.

    Args:
        pairs: the questions, answers and the passages holding each answer.
        prompt: the application's grounded-answer wording and layout.
        distractor_pool: more passages to draw distractors from (the other pairs' passages are
            used too); each pair's own ``distractors`` come first.
        distractors: distractor passages per example.
        abstention_fraction: share of examples (exactly rounded) that show distractors only and
            teach the abstention sentence. 0.2–0.25 keeps answering the habit; much more teaches
            the model to abstain on answerable questions.
        cite: end answers with the numbers of the passages holding them ("… [2]"), as the app
            asks, unless the answer already cites.
        citation_first: put the citation before the answer instead ("[2] The Normans …"), so
            every answering target starts with the same token "[" and, under greedy decoding,
            answering competes as one mass with the abstention sentence's first token (ended
            with the citation, each answer's uncertain first word competes alone, and a fixed
            abstention sentence wins whenever the answer's first word is uncertain).
        seed: which pairs abstain, which distractors, and passage order.
        stats: filled with counts, if given.

    Unanswerable pairs fill at most half of the abstention share (the rest shows answerable
    questions with distractors only); those beyond it are left out and counted.

    Returns:
        Examples of kind "grounded" or "abstention", in the order of ``pairs``.
    """
    if not 0 <= abstention_fraction <= 1:
        raise TrainingDataError("The abstention fraction must be between 0 and 1.")
    stats = stats if stats is not None else GroundedStats()
    rng = random.Random(seed)
    usable, unanswerable = [], []
    for pair in pairs:
        if not pair.question.strip() or (pair.answerable and not pair.answer.strip()):
            stats.skipped.append(f"{pair.question[:60]!r}: empty question or answer")
        elif not pair.answerable:
            if pair.distractors:
                unanswerable.append(pair)
            else:
                stats.skipped.append(f"{pair.question[:60]!r}: unanswerable, and no passage to show")
        elif not pair.passages:
            stats.skipped.append(f"{pair.question[:60]!r}: no passage holds the answer")
        else:
            usable.append(pair)
    # Real unanswerable questions are the better lesson (their passages look relevant), but
    # alone they would teach abstaining on whatever resembles them: half the share at most.
    wanted = round(len(usable) * abstention_fraction / 2)
    kept = set(rng.sample(range(len(unanswerable)), min(wanted, len(unanswerable))))
    stats.unanswerable_left_out = len(unanswerable) - len(kept)
    total = len(usable) + len(kept)
    synthetic = max(0, min(len(usable), round(total * abstention_fraction) - len(kept)))
    abstaining = set(rng.sample(range(len(usable)), synthetic))
    pool = [p for pair in usable for p in pair.passages] + list(distractor_pool)
    index = {id(pair): i for i, pair in enumerate(usable)}
    kept_ids = {id(unanswerable[k]) for k in kept}
    ordered = [pair for pair in pairs if id(pair) in index or id(pair) in kept_ids]
    examples: list[ChatExample] = []
    for pair in ordered:
        if not pair.answerable:
            shown = list(pair.distractors[:distractors + 1])
            examples.append(_example(prompt, pair.question, shown, prompt.abstention, "abstention"))
            stats.abstention += 1
            continue
        i = index[id(pair)]
        chosen = _distractors(pair, pool, distractors + (len(pair.passages) if i in abstaining else 0), rng)
        if len(chosen) < distractors:
            stats.short_of_distractors += 1
        kind: ExampleKind
        if i in abstaining:
            if not chosen:
                stats.skipped.append(f"{pair.question[:60]!r}: no distractor to abstain over")
                continue
            shown, target, kind = chosen, prompt.abstention, "abstention"
        else:
            shown = list(pair.passages) + chosen
            rng.shuffle(shown)  # the answer must not always sit in passage 1
            target = pair.answer.strip()
            if cite and not _CITED.search(target):
                numbers = [n for n, p in enumerate(shown, start=1) if p in pair.passages]
                cited = ", ".join(map(str, numbers))
                if citation_first:
                    target = prompt.leading_citation_template.format(n=cited) + target
                else:
                    target += prompt.citation_template.format(n=cited)
            kind = "grounded"
        examples.append(_example(prompt, pair.question, shown, target, kind))
        if kind == "abstention":
            stats.abstention += 1
        else:
            stats.answerable += 1
    return examples


def _example(prompt: GroundedPrompt, question: str, shown: Sequence[Passage], target: str,
             kind: ExampleKind) -> ChatExample:
    messages: list[Message] = []
    if prompt.system_prompt:
        messages.append({"role": "system", "content": prompt.system_prompt})
    messages += [{"role": "user", "content": prompt.user_message(question, shown)},
                 {"role": "assistant", "content": target}]
    return ChatExample(tuple(messages), kind=kind)


def _distractors(pair: QAPair, pool: Sequence[Passage], count: int, rng: random.Random) -> list[Passage]:
    """Passages that do not hold this pair's answer: its own retrieved ones first, then random."""
    answers = [a for a in (_norm(e) for e in pair.evidence or (pair.answer,)) if a]
    golden = {_norm(p.text) for p in pair.passages}

    def fits(p: Passage, taken: list[Passage]) -> bool:
        text = _norm(p.text)
        # A passage that contains the answer would make an abstention target a lie.
        return (bool(text) and text not in golden and not any(a in text for a in answers)
                and p not in taken)

    chosen: list[Passage] = []
    for p in pair.distractors:
        if len(chosen) < count and fits(p, chosen):
            chosen.append(p)
    tries = 0
    while len(chosen) < count and pool and tries < 20 * count:
        tries += 1
        p = pool[rng.randrange(len(pool))]
        if fits(p, chosen):
            chosen.append(p)
    return chosen
