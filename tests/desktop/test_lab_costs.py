"""Every lab report names what each route costs: the index (build time, size), each adapter
(training time from its record, size) and the engine's memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bastion.desktop import library as library_use_case
from bastion.desktop.app import App
from bastion.desktop.cli import main
from bastion.desktop.paths import data_paths
from tests.desktop.test_lab_cli import LabEngine, questions
from tests.models.adapter_fixtures import random_lora
from tests.store.fakes import CountingParser, HashingEmbedder


class MeasuredEngine(LabEngine):
    """A fake engine with a process to measure (this one)."""

    pid = os.getpid()


def test_a_report_names_the_cost_of_every_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    parser, embedder = CountingParser(), HashingEmbedder()
    monkeypatch.setattr(library_use_case, "default_embedder", lambda folder: embedder)
    monkeypatch.setattr(library_use_case, "default_parse_pool", parser.pool)
    monkeypatch.setattr(App, "engine", lambda self, model=None, reload=False: MeasuredEngine())
    docs = tmp_path / "office"
    docs.mkdir()
    (docs / "vault.txt").write_text("The access code for the north vault is 4417.", encoding="utf-8")
    adapters = data_paths().adapters_dir
    adapters.mkdir(parents=True, exist_ok=True)
    random_lora(adapters / "facts.gguf")
    (adapters / "facts.training.json").write_text(json.dumps({"wall_s": 754.2}), encoding="utf-8")
    random_lora(adapters / "bought.gguf")  # imported from elsewhere: no training record
    assert main(["library", "add", "office", str(docs)]) == 0

    out_dir = tmp_path / "run"
    assert main(["lab", "run", str(questions(tmp_path)), "--collection", "office", "--modes",
                 "model,docs", "--adapter", "facts", "--adapter", "bought", "--out", str(out_dir)]) == 0
    capsys.readouterr()

    costs = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))["costs"]
    assert costs["adapters"]["facts"]["training_s"] == 754.2
    assert costs["adapters"]["bought"]["training_s"] is None
    assert costs["collection"]["index_bytes"] > len("The access code for the north vault is 4417.")
    assert costs["collection"]["index_build_s"] is None
    assert costs["engine"]["rss_mb_after_load"] > 0

    for report in ("report.md", "report.html"):
        text = (out_dir / report).read_text(encoding="utf-8")
        assert "Index (collection office): 1 documents, 1 passages" in text, report
        assert "of passages and vectors" in text
        assert "build time not recorded (the library keeps no record of sync durations)" in text
        assert "Adapter facts: " in text and "training time 13 min (from its training record)" in text
        assert "Adapter bought: " in text and "training time not recorded (no training record" in text
        assert "MB once the model was loaded" in text and "MB while answering" in text
