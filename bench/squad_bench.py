"""Grounded-answer baseline on SQuAD 2.0 (dev subset), in each of the three modes.

    .venv/bin/python bench/squad_bench.py [--data ../shared/data/squad2-dev-subset]
        [--answerable 200] [--unanswerable 100] [--modes model,docs,both] [--max-tokens 48]

Indexes ``articles_txt`` into a fresh data folder, then asks the same sampled questions (seed 0)
in each mode through the real assistant (embedded SmolLM2 + MiniLM). Reports, per mode: answers
containing a gold answer, citation hit rate (a cited passage contains a gold answer), abstention
on unanswerable questions, mean retrieval ms and mean time to first token. Prints Markdown.
Answers are scored with the lab's metrics (``bastion.desktop.lab.metrics``); ``bastion lab``
runs the same comparison on any question set, with intervals and a report.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ModeResult:
    answered_gold: int = 0
    answerable: int = 0
    cited_answers: int = 0
    citation_hits: int = 0
    abstained: int = 0
    unanswerable: int = 0
    retrieval_ms: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    seconds: float = 0.0


def run_mode(mode: str, questions: list[dict[str, Any]], app: Any, retriever: Any,
             max_tokens: int) -> ModeResult:
    from bastion.desktop.assistant import AnswerDelta, AnswerDone, Assistant, PassagesFound
    from bastion.desktop.lab.metrics import abstained, contains_gold
    from bastion.models.engine_types import Sampling

    assistant = Assistant(engine=app.engine(), chats=app.chats, retriever=retriever,
                          system_prompt=app.settings.system_prompt,
                          sampling=Sampling(max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.1))
    result = ModeResult()
    started = time.perf_counter()
    for i, q in enumerate(questions):
        chat = app.chats.create_chat(mode=mode, collections=["squad"] if mode != "model" else [])
        text, done = "", None
        retriever.reset()
        for event in assistant.ask(chat.id, q["question"]):
            if isinstance(event, AnswerDelta):
                text += event.text
            elif isinstance(event, PassagesFound):
                result.retrieval_ms.append(event.retrieval_ms)
            elif isinstance(event, AnswerDone):
                done = event
        assert done is not None
        meta = done.message.meta
        if meta.get("time_to_first_token_s"):
            result.ttft_s.append(meta["time_to_first_token_s"])
        if q["is_impossible"]:
            result.unanswerable += 1
            if abstained(text, done.not_found):
                result.abstained += 1
        else:
            result.answerable += 1
            if contains_gold(text, q["answers"]):
                result.answered_gold += 1
            cited = [s for s in done.message.sources if s.cited]
            if cited:
                result.cited_answers += 1
                if any(contains_gold(retriever.text_of(s.path, s.char_start, s.snippet), q["answers"])
                       for s in cited):
                    result.citation_hits += 1
        if (i + 1) % 25 == 0:
            print(f"  {mode}: {i + 1}/{len(questions)} questions, "
                  f"{(time.perf_counter() - started) / (i + 1):.1f} s each", file=sys.stderr)
    result.seconds = time.perf_counter() - started
    return result


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}% ({n}/{d})" if d else "–"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "squad2-dev-subset")
    parser.add_argument("--answerable", type=int, default=200)
    parser.add_argument("--unanswerable", type=int, default=100)
    parser.add_argument("--modes", default="model,docs,both")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = [json.loads(line) for line in (args.data / "qa.jsonl").read_text(encoding="utf-8").splitlines() if line]
    rng = random.Random(args.seed)
    answerable = rng.sample([r for r in rows if not r["is_impossible"]], args.answerable)
    unanswerable = rng.sample([r for r in rows if r["is_impossible"]], args.unanswerable)
    questions = answerable + unanswerable
    rng.shuffle(questions)

    home = Path(tempfile.mkdtemp(prefix="bastion-squad-"))
    os.environ["BASTION_HOME"] = str(home)
    import bastion.desktop  # noqa: F401 - offline environment
    from bastion.desktop.app import App
    from bastion.desktop.lab.runner import RecordingRetriever
    from bastion.desktop.library import add_collection

    with App() as app:
        library = app.library
        t0 = time.perf_counter()
        add_collection(library, "squad", [args.data / "articles_txt"])
        progress = None
        for event in library.sync("squad"):
            progress = event
        index_s = time.perf_counter() - t0
        retriever = RecordingRetriever(library)
        results = {}
        for mode in args.modes.split(","):
            print(f"mode {mode}: {len(questions)} questions", file=sys.stderr)
            results[mode] = run_mode(mode, questions, app, retriever, args.max_tokens)
            print(row(mode, results[mode]), file=sys.stderr, flush=True)  # in case a later mode is cut
        model_name = app.loaded_model().name if app.loaded_model() else "?"

    chunks = getattr(progress, "chunks", None)
    print(f"SQuAD 2.0 dev subset: {len(answerable)} answerable + {len(unanswerable)} unanswerable "
          f"questions (seed {args.seed}); {model_name}, greedy, ≤ {args.max_tokens} answer tokens; "
          f"16 articles indexed in {index_s:.0f} s" + (f" ({chunks} chunks)" if chunks else "") + ".\n")
    print("| mode | answer contains gold | citation hit rate | abstention (unanswerable) | "
          "mean retrieval | mean time to first token | time per question |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(row(mode, r))
    return 0


def row(mode: str, r: ModeResult) -> str:
    retrieval = f"{statistics.mean(r.retrieval_ms):.0f} ms" if r.retrieval_ms else "–"
    ttft = f"{statistics.mean(r.ttft_s):.2f} s" if r.ttft_s else "–"
    return (f"| {mode} | {pct(r.answered_gold, r.answerable)} | {pct(r.citation_hits, r.cited_answers)} | "
            f"{pct(r.abstained, r.unanswerable)} | {retrieval} | {ttft} | "
            f"{r.seconds / max(1, r.answerable + r.unanswerable):.1f} s |")


if __name__ == "__main__":
    raise SystemExit(main())
