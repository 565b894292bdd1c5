"""What a lab run keeps on disk, so a killed run continues and a report can be made again.

    run.json         the run's settings (question set hash, model, arms, sampling, costs)
    questions.jsonl  a copy of the question set
    answers.jsonl    one line per answer, appended (and fsynced) as each answer comes
    report.*, answers.csv, answers.json   written by ``bastion lab report``
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bastion.desktop.errors import BastionError
from bastion.desktop.lab.arms import Arm
from bastion.desktop.lab.metrics import Passage
from bastion.desktop.lab.questions import QuestionSet, load_questions

RUN_FILE = "run.json"
QUESTIONS_FILE = "questions.jsonl"
ANSWERS_FILE = "answers.jsonl"
RUN_VERSION = 1
# What makes two runs the same experiment: answers of one may continue the other.
IDENTITY = ("questions_sha256", "collection", "model_file", "arms", "sampling", "system_prompt")


@dataclass
class RunInfo:
    """A run's settings (``run.json``)."""

    questions_file: str
    questions_sha256: str
    collection: str | None
    model: str
    model_file: str
    arms: list[Arm]
    sampling: dict[str, Any]
    system_prompt: str
    passage_sentences: int | None = None  # None: a run from before passages were trimmed
    limit: int | None = None
    costs: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    version: int = RUN_VERSION

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "arms": [a.to_dict() for a in self.arms]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunInfo:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "arms": [Arm.from_dict(a) for a in raw["arms"]]})


@dataclass(frozen=True)
class AnswerRecord:
    """One answer of one arm to one question, as the run recorded it (``answers.jsonl``)."""

    question_id: str
    arm: str  # Arm.key
    answer: str
    not_found: bool
    passages: list[Passage]
    seconds: float  # wall time for the whole answer, retrieval included
    retrieval_ms: float | None = None
    time_to_first_token_s: float | None = None
    generation_tps: float | None = None
    generated_tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str | None = None
    engine_rss_mb: float | None = None
    chat_id: int | None = None  # runs before answer_once answered in throwaway chats
    answered_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AnswerRecord:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "passages": [Passage(**p) for p in raw.get("passages", [])]})


class RunFolder:
    """A run folder: its settings, its question set and the answers recorded so far."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def answers_file(self) -> Path:
        return self.path / ANSWERS_FILE

    def exists(self) -> bool:
        return self.run_file.is_file()

    def info(self) -> RunInfo:
        """The run's settings.

        Raises:
            BastionError: this is not a lab run folder, or its run.json is damaged.
        """
        try:
            return RunInfo.from_json(json.loads(self.run_file.read_text(encoding="utf-8")))
        except FileNotFoundError as error:
            raise BastionError(f"{self.path} is not a lab run folder (it has no {RUN_FILE}); "
                               "start one with `bastion lab run`.") from error
        except (ValueError, KeyError, TypeError) as error:
            raise BastionError(f"{self.run_file} is damaged ({error}).") from error

    def questions(self) -> QuestionSet:
        """The run's copy of its question set."""
        return load_questions(self.path / QUESTIONS_FILE)

    def start(self, info: RunInfo, questions: QuestionSet) -> None:
        """Create the folder for ``info``, or check that it holds the same experiment.

        Raises:
            BastionError: the folder holds a run with other settings (it names which).
        """
        if self.exists():
            old = self.info()
            differ = self.differences(info)
            if differ:
                raise BastionError(
                    f"{self.path} holds a lab run with a different {', '.join(differ)}. Give "
                    "another folder with --out, or `bastion lab report` this one.")
            info.created, info.costs = old.created, {**old.costs, **info.costs}
        else:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copyfile(questions.path, self.path / QUESTIONS_FILE)
        _write_json(self.run_file, info.to_json())

    def save_costs(self, costs: dict[str, Any]) -> None:
        """Add measured costs (e.g. the engine's memory once loaded) to the run's settings."""
        info = self.info()
        info.costs = {**info.costs, **costs}
        _write_json(self.run_file, info.to_json())

    def differences(self, info: RunInfo) -> list[str]:
        """The settings (of ``IDENTITY``) in which ``info`` differs from this folder's run;
        empty when the folder may continue it (or holds no run yet)."""
        if not self.exists():
            return []
        old, new = self.info().to_json(), info.to_json()
        return [k for k in IDENTITY if old.get(k) != new.get(k)]

    def answers(self, repair: bool = True) -> list[AnswerRecord]:
        """The answers recorded so far, first of each (question, arm) kept.

        A last line cut short by a kill is left out; with ``repair`` it is also removed from the
        file (its answer is asked again). Only the run that appends next should repair: to any
        other reader, a line cut short may be an answer being written at that moment.

        Raises:
            BastionError: a line other than the last is damaged.
        """
        try:
            data = self.answers_file.read_bytes()
        except FileNotFoundError:
            return []
        complete = data.rfind(b"\n") + 1
        if repair and complete < len(data):  # no newline after the last line: its write never finished
            self._truncate(complete)
        records: list[AnswerRecord] = []
        seen: set[tuple[str, str]] = set()
        for number, line in enumerate(data[:complete].split(b"\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                record = AnswerRecord.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                raise BastionError(f"{self.answers_file} line {number} is damaged ({error}); "
                                   "remove that line to continue the run.") from error
            if (record.question_id, record.arm) not in seen:
                seen.add((record.question_id, record.arm))
                records.append(record)
        return records

    def _truncate(self, size: int) -> None:
        with self.answers_file.open("r+b") as out:
            out.truncate(size)
            out.flush()
            os.fsync(out.fileno())

    def append(self, record: AnswerRecord) -> None:
        """Add one answer, on disk before this returns."""
        line = json.dumps(record.to_json(), ensure_ascii=False) + "\n"
        with self.answers_file.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())


def pick_run_folder(parent: Path, stem: str, info: RunInfo) -> RunFolder:
    """The folder under ``parent`` for the run ``info``: ``stem`` if it is new or holds the same
    experiment (so running again continues it), else ``stem-2``, ``stem-3``… likewise."""
    for n in range(1, 1000):
        folder = RunFolder(parent / (stem if n == 1 else f"{stem}-{n}"))
        if not folder.exists():
            return folder
        try:
            if not folder.differences(info):
                return folder
        except BastionError:  # a damaged run.json: leave that folder alone
            continue
    raise BastionError(f"{parent} holds a thousand lab runs of {stem}: remove old ones.")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
