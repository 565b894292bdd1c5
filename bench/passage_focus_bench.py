"""How much of the gold answer survives trimming passages to sentences, without any model.

    .venv/bin/python bench/passage_focus_bench.py [--workdir passage-focus] [--questions 300]
        [--half train] [--data ../shared/data/squad2-dev-subset]

Indexes one half of the SQuAD 2.0 dev subset's articles (split by title, as the lab's example set;
the train half by default, so the choice is never made on the test half) into a scratch data
folder in ``--workdir`` (kept: a second run reuses it), searches each answerable question as an
answer does (top 4 passages), and prints, per way of trimming, the share of questions whose gold
answer is still in the passages the prompt would get, in the first passage, and the words the
prompt carries. Word ranking is ``desktop.passage_focus`` itself; the MiniLM rows rank sentences
by the embedder's cosine to the question instead (and "mixed" adds the two, the word score
scaled to at most 1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_squad_questions import split_titles

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad2-dev-subset"
Ranker = Callable[[str, list[list[str]]], list[list[float]]]


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def trim(split: list[list[str]], scores: list[list[float]], keep: int, follow: bool) -> list[str]:
    out = []
    for sentences, passage_scores in zip(split, scores, strict=True):
        if len(sentences) <= keep + follow:
            out.append(" ".join(sentences))
            continue
        ranked = sorted(range(len(sentences)), key=lambda i: (-passage_scores[i], i))
        kept = set(ranked[:keep])
        if follow and ranked[0] + 1 < len(sentences):
            kept.add(ranked[0] + 1)
        out.append(" ".join(sentences[i] for i in sorted(kept)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=Path("passage-focus"))
    parser.add_argument("--questions", type=int, default=300, help="answerable questions drawn (seed 0)")
    parser.add_argument("--half", choices=("train", "test"), default="train")
    args = parser.parse_args()

    rows = [json.loads(line) for line in (args.data / "qa.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    train, test = split_titles(r["title"] for r in rows)
    titles = set(train if args.half == "train" else test)
    pool = [r for r in rows if r["title"] in titles and not r["is_impossible"]]
    questions = random.Random(0).sample(pool, min(args.questions, len(pool)))

    work = args.workdir.resolve()
    os.environ["BASTION_HOME"] = str(work / "home")
    os.environ["BASTION_SERVICE"] = "off"
    import bastion.desktop  # noqa: F401 - offline environment first
    from bastion.desktop.app import App
    from bastion.desktop.grounding import RetrievalPolicy
    from bastion.desktop.library import add_collection
    from bastion.desktop.passage_focus import sentence_scores, split_sentences
    from bastion.store.embedder import default_embedder_folder, shared_embedder

    k = RetrievalPolicy().k
    with App() as app:
        library = app.library
        if args.half not in {c.name for c in library.collections()}:
            folder = work / f"{args.half}-articles"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for file in sorted({r["article_file"] for r in rows if r["title"] in titles}):
                shutil.copyfile(args.data / file, folder / Path(file).name)
            add_collection(library, args.half, [folder])
        print(f"indexing the {args.half} half (a second run finds it done)…", file=sys.stderr, flush=True)
        for _ in library.sync(args.half):
            pass
        embedder = shared_embedder(default_embedder_folder())

        def minilm(question: str, split: list[list[str]]) -> list[list[float]]:
            flat = [s for sentences in split for s in sentences]
            if not flat:
                return [[] for _ in split]
            vectors = embedder.embed([question, *flat])
            cosines = (vectors[1:] @ vectors[0]).tolist()
            out, at = [], 0
            for sentences in split:
                out.append(cosines[at:at + len(sentences)])
                at += len(sentences)
            return out

        def mixed(question: str, split: list[list[str]]) -> list[list[float]]:
            words, meaning = sentence_scores(question, split), minilm(question, split)
            top = max((s for p in words for s in p), default=0.0) or 1.0
            return [[w / top + m for w, m in zip(pw, pm, strict=True)] for pw, pm in zip(words, meaning, strict=True)]

        rankers: dict[str, Ranker] = {"rare words (shipped)": sentence_scores, "MiniLM": minilm, "mixed": mixed}
        ways: list[tuple[str, str, int, bool]] = [("whole passages", "", 0, False)]
        ways += [(f"{name}: best {n}{' + next' if follow else ''}", name, n, follow)
                 for name in rankers for n in (1, 2, 3) for follow in (False, True)]
        found = {w[0]: [0, 0, 0] for w in ways}
        for row in questions:
            hits = library.search(row["question"], [args.half], k=k)
            texts = [h.text for h in hits]
            gold = [norm(a) for a in row["answers"] if norm(a)]
            split = [split_sentences(t) for t in texts]
            scores = {name: rank(row["question"], split) for name, rank in rankers.items()}
            for label, name, n, follow in ways:
                kept: Sequence[str] = texts if not name else trim(split, scores[name], n, follow)
                tally = found[label]
                tally[0] += any(g in norm(t) for t in kept for g in gold)
                tally[1] += bool(kept) and any(g in norm(kept[0]) for g in gold)
                tally[2] += sum(len(t.split()) for t in kept)
    n = len(questions)
    print(f"\n{n} answerable {args.half}-half questions, top {k} passages each\n")
    print("| trimming | gold still in the prompt | in the first passage | words in the prompt |")
    print("|---|---|---|---|")
    for label, (anywhere, first, words) in found.items():
        print(f"| {label} | {anywhere / n:.1%} | {first / n:.1%} | {words / n:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
