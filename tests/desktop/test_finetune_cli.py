"""``bastion finetune`` end to end: bad data refused with its line, a short real run registers an
adapter with its training record, and ``finetune merge`` makes a model that answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.desktop.cli import main
from bastion.desktop.paths import data_paths


def chat_lines(n: int) -> list[str]:
    facts = [("the lighthouse of Orvane", "blue"), ("Captain Mereth's ship", "the Kestrel"),
             ("the river Tallow", "north"), ("the Vell festival", "in March")]
    lines = []
    for i in range(n):
        subject, answer = facts[i % len(facts)]
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"Tell me about {subject}."},
            {"role": "assistant", "content": f"About {subject}: the answer is {answer}."}]}))
    return lines


def test_a_bad_line_is_named_before_anything_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join([*chat_lines(2), "{not json", *chat_lines(1)]) + "\n")
    assert main(["finetune", "facts", "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "Line 3 of the training data" in err
    assert not (data_paths().home / "finetune" / "facts").exists()


def test_finetune_needs_data_and_a_usable_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "facts"]) == 2
    assert "--data" in capsys.readouterr().err
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(chat_lines(4)) + "\n")
    assert main(["finetune", "../escape", "--data", str(data)]) == 1
    assert "cannot name an adapter" in capsys.readouterr().err


def test_targets_take_a_group_or_projection_names(capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.models.finetune_types import parse_targets

    assert parse_targets("attention") == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert parse_targets("all")[-1] == "down_proj" and len(parse_targets("all")) == 7
    assert parse_targets("q_proj, v_proj,q_proj") == ("q_proj", "v_proj")
    with pytest.raises(SystemExit) as refused:
        main(["finetune", "facts", "--data", "x.jsonl", "--targets", "q_proj,wq"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "'q_proj,wq' names no projections" in err and "attention" in err


@pytest.mark.slow
def test_a_short_run_registers_an_adapter_that_merges_into_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(chat_lines(12)) + "\n")
    assert main(["finetune", "facts", "--data", str(data), "--max-steps", "2", "--targets", "attention",
                 "--batch-tokens", "256", "--checkpoint-every", "1"]) == 0
    err = capsys.readouterr().err
    assert "step 2/2" in err and "registered the adapter facts" in err

    assert main(["adapters", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["id"] for a in listed] == ["facts"]
    record = data_paths().adapters_dir / "facts.training.json"
    assert json.loads(record.read_text())["steps"] == 2
    from gguf import GGUFReader

    adapted = {t.name.split(".")[2] for t in GGUFReader(data_paths().adapters_dir / "facts.gguf").tensors}
    assert adapted == {"attn_q", "attn_k", "attn_v", "attn_output"}  # --targets attention only

    assert main(["finetune", "merge", "facts", "--quantization", "Q8_0"]) == 0
    out = capsys.readouterr().out
    model = out.split("--model ")[1].split()[0]
    assert main(["ask", "Tell me about the river Tallow.", "--model", model, "--max-tokens", "8",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip()
