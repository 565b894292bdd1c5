"""The embedder sorts texts by length into padded-token budgets and hands vectors back in order."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.store.embedder import SentenceTransformerEmbedder, token_budget_batches


def test_every_index_lands_in_exactly_one_batch_within_the_budget() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(1, 256) for _ in range(500)]
    batches = token_budget_batches(lengths, budget=2048, max_batch=40)
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    for batch in batches:
        assert 1 <= len(batch) <= 40
        # Padded to its longest member, which comes first.
        assert lengths[batch[0]] == max(lengths[i] for i in batch)
        assert len(batch) * lengths[batch[0]] <= 2048
    # Longest first across batches: padding is spent on texts of one length band.
    firsts = [lengths[batch[0]] for batch in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_short_texts_go_many_to_a_batch_up_to_the_cap() -> None:
    assert [len(b) for b in token_budget_batches([8] * 300, budget=8192, max_batch=128)] == [128, 128, 44]
    assert [len(b) for b in token_budget_batches([256] * 64, budget=8192, max_batch=128)] == [32, 32]


def test_a_text_over_the_budget_still_gets_a_batch_of_its_own() -> None:
    assert token_budget_batches([300, 10], budget=100, max_batch=8) == [[0], [1]]
    assert token_budget_batches([], budget=100, max_batch=8) == []


class FakeSentenceTransformer:
    """``encode`` as sentence-transformers offers it; a text's vector is made from the text alone."""

    tokenizer = object()  # no fast backend: the embedder sorts by characters

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str], batch_size: int, **_: Any) -> np.ndarray:
        assert batch_size == len(texts)
        self.batches.append(list(texts))
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = [len(text), sum(map(ord, text)) % 97, 1.0, 2.0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def fake_embedder(tmp_path: Path, model: FakeSentenceTransformer, max_tokens: int) -> SentenceTransformerEmbedder:
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"name": "fake"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    embedder = SentenceTransformerEmbedder(folder, batch_size=4)
    embedder._model, embedder._dimension, embedder._max_tokens = model, 4, max_tokens  # as _load leaves them
    return embedder


def test_vectors_come_back_in_the_callers_order(tmp_path: Path) -> None:
    model = FakeSentenceTransformer()
    embedder = fake_embedder(tmp_path, model, max_tokens=50)
    rng = random.Random(5)
    texts = ["x" * rng.randint(1, 80) + str(i) for i in range(40)]
    vectors = embedder.embed(texts)
    expected = np.concatenate([model.encode([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert vectors.dtype == np.float32 and vectors.flags["C_CONTIGUOUS"]
    sent = model.batches[:-len(texts)]
    # Batched by length: no pass holds more than batch_size full-length texts' worth of tokens.
    assert all(len(b) * min(max(map(len, b)), 50) <= 4 * 50 for b in sent)
    assert len(sent) < len(texts)  # short texts shared passes


def test_no_texts_make_an_empty_matrix(tmp_path: Path) -> None:
    embedder = fake_embedder(tmp_path, FakeSentenceTransformer(), max_tokens=50)
    assert embedder.embed([]).shape == (0, 4)


@pytest.mark.slow
def test_minilm_vectors_do_not_depend_on_the_batching(minilm_path: Path) -> None:
    """Sorting and budgeted passes change padding only: each vector equals the text embedded alone."""
    embedder = SentenceTransformerEmbedder(minilm_path)
    texts = [
        "Cats purr.",
        "Statins lower LDL cholesterol; " * 30,  # past the model's limit: truncated either way
        "Vitamin D and bone density in older adults.",
        "A randomised trial of dietary fibre and colon cancer risk over ten years of follow-up. " * 3,
    ]
    together = embedder.embed(texts)
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    assert np.min(np.sum(together * alone, axis=1)) > 0.99999
