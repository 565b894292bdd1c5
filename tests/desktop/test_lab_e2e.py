"""``bastion lab run`` end to end on the real SmolLM2 and MiniLM: three questions, a tiny folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.desktop.cli import main

pytestmark = pytest.mark.slow

FACTS = {
    "vault.txt": "Security procedures.\n\nThe access code for the north vault is 4417. "
                 "Only the night supervisor may open the north vault.",
    "parking.txt": "Parking.\n\nVisitors park in lot C, next to the main gate. "
                   "Staff park in lot A behind the laboratory.",
}
QUESTIONS = [
    {"id": "vault", "question": "What is the access code for the north vault?", "answers": ["4417"],
     "source": "vault.txt"},
    {"id": "visitors", "question": "Where do visitors park?", "answers": ["lot C"], "source": "parking.txt"},
    {"id": "volcano", "question": "How tall is the volcano on the company logo?", "answers": [],
     "unanswerable": True},
]


def test_lab_run_on_the_real_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "office"
    docs.mkdir()
    for name, text in FACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    questions = tmp_path / "office.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    assert main(["library", "add", "office", str(docs)]) == 0
    out_dir = tmp_path / "run"
    assert main(["lab", "run", str(questions), "--collection", "office", "--modes", "model,docs",
                 "--max-tokens", "32", "--out", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    assert "[6/6]" in err and "Recommended route" in out

    answers = [json.loads(line) for line in (out_dir / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 6
    by = {(a["question_id"], a["arm"]): a for a in answers}
    vault = by[("vault", "docs")]
    assert "4417" in vault["answer"]  # greedy SmolLM2 reads the code from the passage
    assert any(p["path"].endswith("vault.txt") for p in vault["passages"])
    assert vault["time_to_first_token_s"] and vault["generation_tps"] and vault["engine_rss_mb"]
    assert by[("vault", "model")]["passages"] == []

    report = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "base + documents" in report and "SmolLM2" in report
    rows = json.loads((out_dir / "answers.json").read_text(encoding="utf-8"))["answers"]
    vault_row = next(r for r in rows if r["question_id"] == "vault" and r["arm"] == "docs")
    assert vault_row["correct"] and vault_row["contains_gold"]

    # Greedy and seeded: a second run of the same questions gives the same answers.
    again = tmp_path / "again"
    assert main(["lab", "run", str(questions), "--collection", "office", "--modes", "docs",
                 "--max-tokens", "32", "--out", str(again)]) == 0
    repeat = [json.loads(line) for line in (again / "answers.jsonl").read_text().splitlines()]
    assert {a["question_id"]: a["answer"] for a in repeat} == {
        q: a["answer"] for (q, arm), a in by.items() if arm == "docs"}
