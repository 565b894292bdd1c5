"""One embedder per model folder and process: every library opened here shares it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from bastion.store.embedder import EmbedderError, SentenceTransformerEmbedder, shared_embedder


def model_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"name": name}))
    (folder / "model.safetensors").write_bytes(name.encode() * 64)
    return folder


def test_two_users_of_one_folder_get_the_same_embedder(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "mini")
    first = shared_embedder(folder)
    assert isinstance(first, SentenceTransformerEmbedder)
    # Another spelling of the same folder is the same model.
    assert shared_embedder(tmp_path / "." / "mini") is first


def test_different_folders_get_different_embedders(tmp_path: Path) -> None:
    a = shared_embedder(model_folder(tmp_path, "a"))
    b = shared_embedder(model_folder(tmp_path, "b"))
    assert a is not b and a.id != b.id


def test_threads_asking_at_once_get_one_instance(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "raced")
    start = threading.Barrier(8)
    got: list[SentenceTransformerEmbedder] = []

    def ask() -> None:
        start.wait()
        got.append(shared_embedder(folder))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8 and all(e is got[0] for e in got)


def test_a_refused_folder_is_not_cached(tmp_path: Path) -> None:
    folder = tmp_path / "pickles"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(EmbedderError, match="safetensors"):
        shared_embedder(folder)
    (folder / "model.safetensors").write_bytes(b"y")  # fixed by the user: now it loads
    assert shared_embedder(folder).folder == folder.resolve()
