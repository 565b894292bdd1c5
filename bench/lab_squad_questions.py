"""Write a lab question set from the SQuAD 2.0 dev subset: test-half articles only.

    .venv/bin/python bench/lab_squad_questions.py [--data ../shared/data/squad2-dev-subset]
        [--out squad-lab] [--answerable 50] [--unanswerable 50] [--seed 0] [--half test]

The articles are split by title into a train half and a test half, deterministically (by the
SHA-256 of each title), so an adapter fine-tuned on the train half never saw a test article.
Writes into OUT:

    questions.jsonl   test-half questions, answerable and unanswerable (SQuAD 2.0's impossible
                      questions, written against the same paragraphs), shuffled with --seed
    test-articles/    the test-half articles, to index: `bastion library add squad-test OUT/test-articles`
    split.json        which titles are train and which are test

Then: `bastion lab run OUT/questions.jsonl --collection squad-test`.

With ``--half train`` it writes ``train-questions.jsonl`` and ``train-articles/`` instead: the
questions a grounded adapter is trained on (`bastion finetune NAME --questions
OUT/train-questions.jsonl --collection squad-train`), never a test article's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad2-dev-subset"


def split_titles(titles: Iterable[str]) -> tuple[list[str], list[str]]:
    """(train, test): the titles ordered by the SHA-256 of their UTF-8 text, halved.

    Independent of the order given and of any random seed; with an odd count the extra title
    goes to train.
    """
    ordered = sorted(set(titles), key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
    middle = (len(ordered) + 1) // 2
    return sorted(ordered[:middle]), sorted(ordered[middle:])


def question_row(row: dict[str, Any]) -> dict[str, Any]:
    """A SQuAD row as a lab question."""
    out: dict[str, Any] = {"id": row["id"], "question": row["question"],
                           "answers": list(dict.fromkeys(row["answers"])),
                           "source": Path(row["article_file"]).name, "title": row["title"]}
    if row["is_impossible"]:
        out["unanswerable"] = True
        out["answers"] = []
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("squad-lab"))
    parser.add_argument("--answerable", type=int, default=50)
    parser.add_argument("--unanswerable", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half", choices=("test", "train"), default="test")
    args = parser.parse_args()

    rows = [json.loads(line) for line in (args.data / "qa.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    train, test = split_titles(r["title"] for r in rows)
    half = test if args.half == "test" else train
    in_test = [r for r in rows if r["title"] in set(half)]
    rng = random.Random(args.seed)
    answerable = [r for r in in_test if not r["is_impossible"]]
    unanswerable = [r for r in in_test if r["is_impossible"]]
    chosen = (rng.sample(answerable, min(args.answerable, len(answerable)))
              + rng.sample(unanswerable, min(args.unanswerable, len(unanswerable))))
    rng.shuffle(chosen)

    articles = args.out / f"{args.half}-articles"
    articles.mkdir(parents=True, exist_ok=True)
    for old in articles.glob("*.txt"):  # a re-run with other data leaves no stale article
        old.unlink()
    files = sorted({r["article_file"] for r in in_test})
    for file in files:
        shutil.copyfile(args.data / file, articles / Path(file).name)
    questions = args.out / ("questions.jsonl" if args.half == "test" else "train-questions.jsonl")
    with questions.open("w", encoding="utf-8") as out:
        for row in chosen:
            out.write(json.dumps(question_row(row), ensure_ascii=False) + "\n")
    (args.out / "split.json").write_text(json.dumps(
        {"rule": "titles ordered by SHA-256 of the title, first half train", "train": train,
         "test": test, "seed": args.seed}, indent=2) + "\n", encoding="utf-8")

    n_unanswerable = sum(r["is_impossible"] for r in chosen)
    print(f"{len(chosen)} questions ({len(chosen) - n_unanswerable} answerable, {n_unanswerable} "
          f"unanswerable) from {len(half)} {args.half} articles → {questions}\n"
          f"test articles: {', '.join(test)}\ntrain articles: {', '.join(train)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
