"""Fine-tuning on this machine: speed, memory and effect, through the commands a user runs.

    .venv/bin/python bench/finetune_bench.py [--out bench-finetune] [--strong-epochs 8]
        [--strong-lr 2e-3] [--skip-strong] [--skip-lab] [--threads N]

Invents 50 facts no model was trained on (places, people and objects with made-up names and
values), each asked five ways: four phrasings are the training data (200 chat pairs), the fifth
is held back and is what the lab asks. In a scratch data folder (BASTION_HOME=OUT/home) it runs:

1. ``bastion finetune facts --data train.jsonl`` at the trainer's defaults (3 epochs): the
   issue's "200 chat pairs × 3 epochs" figure — wall time, training tokens/s, s/step, peak RSS,
   adapter size, from the training record the command writes;
2. the same data with a stronger step size for more epochs (``facts-strong``): how much it takes
   to make a 135M model recall 50 new facts;
3. ``bastion library add facts`` over a file stating the facts, then ``bastion lab run`` on the
   held-back phrasings, arms model / docs, base and each adapter: recall in model-only mode
   against retrieval's figure side by side.

Prints one table per part; the lab's own report (report.md, report.html, answers.csv) stays in
OUT/lab. Run it on an idle machine: training speed is what it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASTION = [str(Path(sys.executable).parent / "bastion")]  # the venv's entry point, as a user runs it

SYLLABLES = ["ka", "ren", "vol", "tis", "mar", "oth", "bel", "quin", "zor", "ael", "dun", "fey",
             "lor", "mis", "pra", "sul", "thar", "ul", "vey", "wen", "xan", "yor", "ith", "cal"]
COLOURS = ["amber", "violet", "crimson", "teal", "ochre", "silver", "indigo", "saffron", "jade", "copper"]


def name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


@dataclass(frozen=True)
class Fact:
    statement: str
    questions: tuple[str, str, str, str, str]  # four to train on, the last one held back
    answer: str


def invent_facts(count: int = 50, seed: int = 7) -> list[Fact]:
    """``count`` facts in ten kinds, every name and value made up (and unique)."""
    rng = random.Random(seed)
    facts: list[Fact] = []
    used: set[str] = set()

    def fresh(parts: int = 2) -> str:
        while (word := name(rng, parts)) in used:
            pass
        used.add(word)
        return word

    kinds = [
        lambda: (lambda a, b: Fact(f"The capital of the island of {a} is {b}.", (
            f"What is the capital of the island of {a}?", f"Which city is the capital of {a} island?",
            f"Name the capital of the island of {a}.", f"The island of {a} has which capital?",
            f"Tell me the capital city of the island of {a}."), b))(fresh(), fresh(3)),
        lambda: (lambda a, b: Fact(f"The {a} engine was invented by {b}.", (
            f"Who invented the {a} engine?", f"Who is the inventor of the {a} engine?",
            f"The {a} engine was invented by whom?", f"Name the inventor of the {a} engine.",
            f"Which person created the {a} engine?"), b))(fresh(), f"{fresh()} {fresh()}"),
        lambda: (lambda a, b: Fact(f"The flag of the {a} guild is {b}.", (
            f"What colour is the flag of the {a} guild?", f"Which colour is the {a} guild's flag?",
            f"The {a} guild flies a flag of what colour?", f"Name the colour of the {a} guild's flag.",
            f"What is the colour of the flag of the {a} guild?"), b))(fresh(), rng.choice(COLOURS)),
        lambda: (lambda a, b: Fact(f"The town of {a} was founded in {b}.", (
            f"When was the town of {a} founded?", f"In which year was {a} town founded?",
            f"What year was the town of {a} founded?", f"The town of {a} dates from which year?",
            f"In what year was the town of {a} established?"), b))(fresh(), str(rng.randint(1100, 1899))),
        lambda: (lambda a, b: Fact(f"The river {a} flows into Lake {b}.", (
            f"Into which lake does the river {a} flow?", f"Where does the river {a} end?",
            f"The river {a} flows into what lake?", f"Name the lake the river {a} flows into.",
            f"What lake does the river {a} run into?"), f"Lake {b}"))(fresh(), fresh()),
        lambda: (lambda a, b: Fact(f"The {a} symphony was composed by {b}.", (
            f"Who composed the {a} symphony?", f"Who wrote the {a} symphony?",
            f"The {a} symphony is the work of which composer?", f"Name the composer of the {a} symphony.",
            f"Which composer created the {a} symphony?"), b))(fresh(), f"{fresh()} {fresh()}"),
        lambda: (lambda a, b: Fact(f"Mount {a} is {b} metres high.", (
            f"How high is Mount {a}?", f"What is the height of Mount {a}?",
            f"How many metres high is Mount {a}?", f"Mount {a} rises to what height?",
            f"How tall is Mount {a} in metres?"), b))(fresh(), str(rng.randint(1200, 8800))),
        lambda: (lambda a, b: Fact(f"The national bird of {a} is the {b} finch.", (
            f"What is the national bird of {a}?", f"Which bird is the national bird of {a}?",
            f"{a}'s national bird is which bird?", f"Name the national bird of {a}.",
            f"What bird is {a}'s national symbol?"), f"{b} finch"))(fresh(), rng.choice(COLOURS)),
        lambda: (lambda a, b: Fact(f"The ship {a} was captained by {b}.", (
            f"Who captained the ship {a}?", f"Who was the captain of the ship {a}?",
            f"The ship {a} had which captain?", f"Name the captain of the ship {a}.",
            f"Which captain commanded the ship {a}?"), b))(fresh(), f"{fresh()} {fresh()}"),
        lambda: (lambda a, b: Fact(f"The {a} festival is held in the month of {b}.", (
            f"When is the {a} festival held?", f"In which month is the {a} festival held?",
            f"What month is the {a} festival in?", f"The {a} festival takes place in which month?",
            f"During which month does the {a} festival happen?"), b))(
            fresh(), rng.choice(["January", "February", "March", "April", "May", "June", "July",
                                 "August", "September", "October", "November", "December"])),
    ]
    while len(facts) < count:
        facts.append(kinds[len(facts) % len(kinds)]())
    return facts


def write_inputs(out: Path, facts: list[Fact]) -> tuple[Path, Path, Path]:
    """train.jsonl (chat pairs), questions.jsonl (the lab's held-back phrasings), docs/facts.txt."""
    out.mkdir(parents=True, exist_ok=True)
    train = out / "train.jsonl"
    with train.open("w", encoding="utf-8") as f:
        for fact in facts:
            for question in fact.questions[:4]:
                f.write(json.dumps({"messages": [{"role": "user", "content": question},
                                                 {"role": "assistant", "content": fact.statement}]}) + "\n")
    questions = out / "questions.jsonl"
    with questions.open("w", encoding="utf-8") as f:
        for i, fact in enumerate(facts):
            f.write(json.dumps({"id": f"fact-{i}", "question": fact.questions[4], "answers": [fact.answer],
                                "source": "facts.txt"}) + "\n")
    docs = out / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "facts.txt").write_text("\n\n".join(f.statement for f in facts) + "\n", encoding="utf-8")
    return train, questions, docs


def bastion(args: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``bastion ARGS``, its output appended to ``log``; wall seconds. Exits on failure."""
    started = time.monotonic()
    with log.open("a", encoding="utf-8") as f:
        f.write(f"\n$ bastion {' '.join(args)}\n")
        f.flush()
        code = subprocess.call([*BASTION, *args], env=env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"bastion {' '.join(args)} failed ({code}); see {log}")
    return time.monotonic() - started


def training_row(home: Path, name: str, wall: float) -> dict[str, str]:
    """One run's figures, from the training record ``bastion finetune`` writes beside the adapter."""
    record = json.loads((home / "models" / "adapters" / f"{name}.training.json").read_text())
    steps, hyper = record["steps"], record["hyperparameters"]
    return {
        "run": name,
        "epochs": str(hyper["epochs"]),
        "lr": f"{hyper['learning_rate']:g}",
        "steps": str(steps),
        "s/step": f"{record['train_s'] / steps:.2f}" if steps else "?",
        "tokens/s": f"{record['tokens_per_s']:.0f}",
        "load": f"{record['load_s']:.0f} s",
        "training": f"{record['wall_s'] / 60:.1f} min",
        "command": f"{wall / 60:.1f} min" if wall == wall else "(reused)",
        "peak RSS": f"{record['peak_rss_mb'] / 1024:.2f} GB",
        "adapter": f"{record['adapter']['bytes'] / 1e6:.1f} MB",
        "final loss": f"{record['loss_curve'][-1][1]:.3f}" if record["loss_curve"] else "?",
    }


def table(rows: list[dict[str, str]]) -> str:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    line = " | ".join(k.ljust(widths[k]) for k in keys)
    return "\n".join([line, "-" * len(line)] + [" | ".join(r[k].ljust(widths[k]) for k in keys) for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-finetune"))
    parser.add_argument("--strong-epochs", type=int, default=8)
    parser.add_argument("--strong-lr", type=float, default=2e-3)
    parser.add_argument("--skip-strong", action="store_true")
    parser.add_argument("--targets", default="attention",
                        help="projections the adapters change (finetune --targets: attention, all, …)")
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="the engine's threads for the lab (the app's setting n_threads; on "
                             "2 cores shared with other work, 1 answers several times faster)")
    args = parser.parse_args()

    out = args.out.resolve()
    home = out / "home"
    env = {**os.environ, "BASTION_HOME": str(home)}
    log = out / "commands.log"
    facts = invent_facts()
    train, questions, docs = write_inputs(out, facts)
    print(f"{len(facts)} invented facts, 200 training pairs → {train}; log: {log}", file=sys.stderr)

    rows = []
    adapters = home / "models" / "adapters"
    for name, extra in [("facts", []),
                        *([] if args.skip_strong else [("facts-strong", ["--epochs", str(args.strong_epochs),
                                                                          "--lr", str(args.strong_lr)])])]:
        if not (adapters / f"{name}.gguf").exists():  # a re-run reuses finished adapters
            wall = bastion(["finetune", name, "--data", str(train), "--targets", args.targets, *extra], env, log)
        else:
            wall = float("nan")
        rows.append(training_row(home, name, wall))
    print(f"\nTraining (SmolLM2-135M Q4_1 base, LoRA on the {args.targets} projections, CPU):\n")
    print(table(rows))

    if args.skip_lab:
        return 0
    if args.threads:
        bastion(["settings", "set", "n_threads", str(args.threads)], env, log)
    if not (home / "library.db").exists():
        bastion(["library", "add", "facts", str(docs)], env, log)
    lab = out / "lab"
    adapter_args = [a for row in rows for a in ("--adapter", row["run"])]
    bastion(["lab", "run", str(questions), "--collection", "facts", "--modes", "model,docs",
             *adapter_args, "--out", str(lab)], env, log)
    report = (lab / "report.md").read_text(encoding="utf-8")
    print("\nRecall of the 50 facts, asked with a phrasing never trained on (lab report):\n")
    print(report.split("\n## ", 2)[1] if "\n## " in report else report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
