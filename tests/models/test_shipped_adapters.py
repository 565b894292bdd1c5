"""The adapters that ship with Bastion (models/embedded_adapters/): each is listed, matches the
SHA-256 in its manifest, fits the embedded model it was trained on, stays within its size
budget, and carries its training record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.models.adapter_catalog import EMBEDDED_ADAPTERS_DIR, AdapterCatalog
from bastion.models.adapter_file import check_adapter_fits
from bastion.models.file_hashes import sha256_file
from bastion.models.gguf_file import read_gguf_info

pytestmark = pytest.mark.shipped_adapters

MAX_BYTES = 10 * 1000 * 1000  # issue #13: the shipped grounded adapter is at most 10 MB


def test_the_grounded_adapter_ships_verified_and_fits_the_embedded_model(
    tmp_path: Path, smollm2_path: Path
) -> None:
    catalog = AdapterCatalog(tmp_path / "adapters")
    entries = {e.id: e for e in catalog.entries(hash_files=True)}
    assert "grounded" in entries
    entry = entries["grounded"]
    assert (entry.origin, entry.verified) == ("embedded", "verified")
    assert entry.path.parent == EMBEDDED_ADAPTERS_DIR
    assert entry.file_size <= MAX_BYTES
    assert entry.info is not None
    check_adapter_fits(entry.info, read_gguf_info(smollm2_path))
    record = json.loads(entry.path.with_name("grounded.training.json").read_text(encoding="utf-8"))
    assert record["base"]["sha256"] == sha256_file(smollm2_path)
    assert record["adapter"]["sha256"] == entry.sha256 and record["steps"] > 0
    # The shipped folder holds nothing a listing would not explain.
    assert sorted(p.name for p in EMBEDDED_ADAPTERS_DIR.iterdir()) == [
        "grounded.gguf", "grounded.training.json", "manifest.json"]
