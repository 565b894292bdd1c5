"""LoRA adapters: reading and checking them against a base, importing, listing, verifying,
removing, and turning ``NAME[:SCALE]`` into a checked path and scale. Bad input first-class."""

from __future__ import annotations

import errno
import json
import stat
from pathlib import Path

import numpy as np
import pytest

from bastion.models import model_import
from bastion.models.adapter_catalog import (
    AdapterCatalog,
    AdapterError,
    AdapterMismatch,
    AdapterNotFound,
    InvalidAdapterFile,
    InvalidAdapterScale,
    check_adapter_fits,
    load_adapter_records,
    parse_adapter_spec,
    read_adapter_info,
    resolve_adapter,
    resolve_adapters,
)
from bastion.models.adapter_import import adapter_file_name, import_adapter
from bastion.models.catalog import Catalog
from bastion.models.errors import InvalidModelFile, ModelError, ModelNotFound
from bastion.models.file_hashes import sha256_file
from bastion.models.gguf_file import read_gguf_info
from bastion.models.model_import import ModelAlreadyImported, ModelImportFailed, import_model
from bastion.models.model_manifest import MANIFEST_NAME

from . import gguf_factory as factory
from .adapter_fixtures import random_lora, tiny_lora, write_base_gguf

SMOLLM2_ID = "SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture
def adapters_dir(tmp_path: Path) -> Path:
    return tmp_path / "home" / "models" / "adapters"


@pytest.fixture
def models(tmp_path: Path, smollm2_path: Path) -> Catalog:
    """The real SmolLM2 as the only model (the models folder is empty)."""
    return Catalog(tmp_path / "home" / "models", embedded_path=smollm2_path)


@pytest.fixture
def smol_adapter(tmp_path: Path) -> Path:
    return random_lora(tmp_path / "downloads" / "facts.gguf")


def adapter_kv(**extra: factory.MetaValue) -> dict[str, factory.MetaValue]:
    return {"general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 2.0, **extra}


def nothing_imported(adapters_dir: Path) -> bool:
    files = list(adapters_dir.iterdir()) if adapters_dir.exists() else []
    return (not [p for p in files if p.suffix in (".gguf", ".part")]
            and load_adapter_records(adapters_dir) == {})


# -- reading an adapter -------------------------------------------------------------------------


def test_a_smollm2_adapter_reads_and_fits_the_embedded_model(smol_adapter: Path,
                                                            smollm2_path: Path) -> None:
    info = read_adapter_info(smol_adapter)
    assert (info.architecture, info.ranks, info.alpha, info.hidden_size) == ("llama", (2,), 2.0, 576)
    assert info.layers == tuple(range(30)) and info.targets == ("attn_q", "attn_v")
    assert len(info.weights) == 60 and info.base_name == "SmolLM2 135M Instruct"
    q = info.weights[0]
    assert (q.weight, q.a_shape, q.b_shape) == ("blk.0.attn_q.weight", (576, 2), (2, 576))
    check_adapter_fits(info, read_gguf_info(smollm2_path))  # does not raise


@pytest.mark.parametrize("write", [factory.write_png_named_gguf, factory.write_zip_named_gguf,
                                   factory.write_zero_byte])
def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path, write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidModelFile, match=r"not a GGUF|is empty"):
        read_adapter_info(write(tmp_path / "adapter.gguf"))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AdapterNotFound, match=r"There is no adapter file at"):
        read_adapter_info(tmp_path / "absent.gguf")


def test_a_model_is_not_an_adapter(tmp_path: Path, smollm2_path: Path) -> None:
    with pytest.raises(InvalidAdapterFile, match=r"is a model, not a LoRA adapter.*bastion models import"):
        read_adapter_info(factory.write_tiny_gguf(tmp_path / "model.gguf"))
    with pytest.raises(InvalidAdapterFile, match=r"general.type is 'model'"):
        read_adapter_info(smollm2_path)


def test_an_adapter_that_is_not_a_lora_is_refused(tmp_path: Path, smol_adapter: Path) -> None:
    other = factory.copy_with_metadata(smol_adapter, tmp_path / "cv.gguf",
                                       set_str={"adapter.type": "control_vector"})
    with pytest.raises(InvalidAdapterFile, match=r"'control_vector' adapter; Bastion attaches LoRA"):
        read_adapter_info(other)
    untyped = factory.copy_with_metadata(smol_adapter, tmp_path / "untyped.gguf",
                                         drop={"adapter.type"})
    with pytest.raises(InvalidAdapterFile, match=r"'untyped' adapter"):
        read_adapter_info(untyped)


@pytest.mark.parametrize("write", [factory.write_huge_tensor_count, factory.write_huge_kv_count,
                                   factory.write_huge_string, factory.write_huge_array])
def test_huge_counts_are_refused_like_a_model(tmp_path: Path, write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidModelFile, match=r"claims|-byte value|the most Bastion accepts"):
        read_adapter_info(write(tmp_path / "huge.gguf"))


def test_truncated_tensors_are_refused(tmp_path: Path, smol_adapter: Path) -> None:
    cut = factory.write_truncated_gguf(smol_adapter, tmp_path / "cut.gguf", cut=100)
    with pytest.raises(InvalidModelFile, match=r"cut short"):
        read_adapter_info(cut)


def test_tensors_that_are_not_lora_pairs_are_refused(tmp_path: Path) -> None:
    a = np.zeros((2, 64), np.float32)  # PEFT (rank, in) → ne [64, 2]
    cases = {
        "lacks blk.0.attn_q.weight.lora_b": {"blk.0.attn_q.weight.lora_a": a},
        "'blk.0.attn_q.weight', which is not a LoRA factor": {"blk.0.attn_q.weight": a},
        "ranks differ \\(2 and 3\\)": {"blk.0.attn_q.weight.lora_a": a,
                                      "blk.0.attn_q.weight.lora_b": np.zeros((64, 3), np.float32)},
    }
    for i, (message, tensors) in enumerate(cases.items()):
        path = factory.write_tiny_gguf(tmp_path / f"bad{i}.gguf", kv=adapter_kv(), tokens=None,
                                       chat_template=None, tensors=tensors)
        with pytest.raises(InvalidAdapterFile, match=message):
            read_adapter_info(path)
    alpha = factory.write_tiny_gguf(tmp_path / "alpha.gguf", kv=adapter_kv(**{"adapter.lora.alpha": 8}),
                                    tokens=None, chat_template=None)
    with pytest.raises(InvalidAdapterFile, match=r"alpha that is not a number"):
        read_adapter_info(alpha)


# -- fitting a base -----------------------------------------------------------------------------


@pytest.mark.parametrize(("shapes", "message"), [
    ({"hidden": 896, "kv": 128, "heads": (14, 2), "layers": 2},
     f"this adapter is for a model with hidden size 896; {SMOLLM2_ID} has 576"),
    ({"arch": "qwen2"}, f"this adapter is for a 'qwen2' model; {SMOLLM2_ID} is 'llama'"),
    ({"layers": 32}, f"this adapter changes layer 32 and {SMOLLM2_ID} has 30 layers"),
    ({"ffn": 2048, "modules": ("up_proj",), "layers": 1},
     f"blk.0.ffn_up.weight is 576×1536 in {SMOLLM2_ID}, the adapter expects 576×2048"),
])
def test_an_adapter_for_another_base_is_refused_with_the_difference(
        tmp_path: Path, smollm2_path: Path, shapes: dict[str, object], message: str) -> None:
    adapter = read_adapter_info(random_lora(tmp_path / "other.gguf", **shapes))  # type: ignore[arg-type]
    with pytest.raises(AdapterMismatch) as caught:
        check_adapter_fits(adapter, read_gguf_info(smollm2_path))
    text = str(caught.value)
    assert text.startswith(f"other.gguf does not fit {SMOLLM2_ID}: {message}.")
    assert "Use it with the model it was trained on (it names 'SmolLM2 135M Instruct'" in text


def test_an_adapter_is_no_base(smol_adapter: Path) -> None:
    info = read_adapter_info(smol_adapter)
    with pytest.raises(AdapterMismatch, match=r"facts is itself an adapter"):
        check_adapter_fits(info, info.gguf)


# -- importing ----------------------------------------------------------------------------------


def test_import_copies_privately_and_records_hash_and_base(smol_adapter: Path, adapters_dir: Path,
                                                           models: Catalog) -> None:
    seen: list[tuple[int, int]] = []
    entry = import_adapter(smol_adapter, adapters_dir, models,
                           lambda done, total: seen.append((done, total)))
    dest = adapters_dir / "facts.gguf"
    assert entry.path == dest and entry.origin == "imported" and entry.usable
    assert dest.read_bytes() == smol_adapter.read_bytes()
    assert entry.sha256 == entry.expected_sha256 == sha256_file(smol_adapter)
    assert entry.verified == "verified" and seen[-1][0] == smol_adapter.stat().st_size
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert stat.S_IMODE(adapters_dir.stat().st_mode) == 0o700
    base = entry.base
    assert base is not None
    assert (base.model, base.architecture, base.n_embd, base.n_layer, base.matched_by) == (
        SMOLLM2_ID, "llama", 576, 30, "shapes")
    raw = json.loads((adapters_dir / MANIFEST_NAME).read_text())["files"]["facts.gguf"]
    assert raw["sha256"] == entry.sha256 and raw["base"]["model"] == SMOLLM2_ID
    assert raw["source"] == str(smol_adapter.resolve())
    assert [e.id for e in AdapterCatalog(adapters_dir).entries()] == ["facts"]
    # The model catalog does not list adapters as models.
    assert [e.id for e in models.entries()] == [SMOLLM2_ID]


def test_import_prefers_the_base_the_adapter_names(tmp_path: Path, adapters_dir: Path) -> None:
    models_dir = adapters_dir.parent
    alpha = import_model(write_base_gguf(tmp_path / "src" / "Alpha.gguf", name="Alpha"),
                         models_dir, embedded_sha256="0" * 64)
    write_base_gguf(models_dir / "Beta.gguf", name="Beta Model")
    catalog = Catalog(models_dir, include_embedded=False)
    by_name = import_adapter(tiny_lora(tmp_path / "n.gguf", base_name="beta model"),
                             adapters_dir, catalog)
    assert by_name.base is not None and (by_name.base.model, by_name.base.matched_by) == (
        "Beta", "name")
    by_sha = import_adapter(tiny_lora(tmp_path / "s.gguf", seed=1, base_name="Beta Model",
                                      base_sha256=alpha.expected_sha256), adapters_dir, catalog)
    assert by_sha.base is not None and (by_sha.base.model, by_sha.base.matched_by) == (
        "Alpha", "sha256")
    chosen = import_adapter(tiny_lora(tmp_path / "c.gguf", seed=2, base_name="Beta Model"),
                            adapters_dir, catalog, base="Alpha")
    assert chosen.base is not None and (chosen.base.model, chosen.base.matched_by) == (
        "Alpha", "chosen")


def test_import_refuses_every_bad_input_and_leaves_nothing(
        tmp_path: Path, smol_adapter: Path, adapters_dir: Path, models: Catalog) -> None:
    bad = {
        "not GGUF": (factory.write_png_named_gguf(tmp_path / "png.gguf"), InvalidModelFile),
        "a model": (factory.write_tiny_gguf(tmp_path / "model.gguf"), InvalidAdapterFile),
        "not lora": (factory.copy_with_metadata(smol_adapter, tmp_path / "cv.gguf",
                                                set_str={"adapter.type": "control_vector"}),
                     InvalidAdapterFile),
        "other base": (random_lora(tmp_path / "wide.gguf", hidden=896, kv=128, heads=(14, 2),
                                   layers=2), AdapterMismatch),
        "huge counts": (factory.write_huge_tensor_count(tmp_path / "huge.gguf"), InvalidModelFile),
        "truncated": (factory.write_truncated_gguf(smol_adapter, tmp_path / "cut.gguf"),
                      InvalidModelFile),
    }
    for what, (path, error) in bad.items():
        with pytest.raises(error):
            import_adapter(path, adapters_dir, models)
        assert nothing_imported(adapters_dir), what
    with pytest.raises(AdapterMismatch, match=f"wide.gguf does not fit {SMOLLM2_ID}: this "
                                              "adapter is for a model with hidden size 896"):
        import_adapter(bad["other base"][0], adapters_dir, models)


def test_import_with_no_fitting_model_names_the_closest(tmp_path: Path, adapters_dir: Path,
                                                        smollm2_path: Path) -> None:
    models_dir = adapters_dir.parent
    write_base_gguf(models_dir / "Tiny-Base.gguf")
    catalog = Catalog(models_dir, embedded_path=smollm2_path)
    wide = random_lora(tmp_path / "wide.gguf", hidden=896, kv=128, heads=(14, 2), layers=2)
    with pytest.raises(AdapterMismatch) as caught:
        import_adapter(wide, adapters_dir, catalog)
    assert str(caught.value).startswith(
        f"wide.gguf fits none of your 2 models. The closest, {SMOLLM2_ID}: this adapter is for a "
        "model with hidden size 896")
    assert "Import the model it was trained on ('SmolLM2 135M Instruct')" in str(caught.value)
    with pytest.raises(AdapterMismatch, match=r"does not fit Tiny-Base: this adapter is for a "
                                              "model with hidden size 896; Tiny-Base has 64"):
        import_adapter(wide, adapters_dir, catalog, base="Tiny-Base")
    with pytest.raises(ModelNotFound):
        import_adapter(wide, adapters_dir, catalog, base="no-such-model")
    with pytest.raises(AdapterMismatch, match=r"There is no model to check"):
        import_adapter(wide, adapters_dir, Catalog(tmp_path / "empty", include_embedded=False))
    assert nothing_imported(adapters_dir)


def test_import_refuses_duplicates_and_names_that_cannot_be_typed(
        tmp_path: Path, smol_adapter: Path, adapters_dir: Path, models: Catalog) -> None:
    import_adapter(smol_adapter, adapters_dir, models)
    with pytest.raises(ModelAlreadyImported, match=r"already in the adapters folder"):
        import_adapter(smol_adapter, adapters_dir, models)
    with pytest.raises(ModelAlreadyImported, match=r"already available as facts"):
        import_adapter(smol_adapter, adapters_dir, models, name="again")
    for name in ("a:b", "../x", ".hidden", " "):
        with pytest.raises(AdapterError, match=r"cannot be an adapter's name"):
            adapter_file_name(name)
    colon = tmp_path / "v1:2.gguf"
    colon.write_bytes(random_lora(tmp_path / "other.gguf", seed=3).read_bytes())
    assert import_adapter(colon, adapters_dir, models).id == "v1-2"
    renamed = random_lora(tmp_path / "third.gguf", seed=4)
    assert import_adapter(renamed, adapters_dir, models, name="Renamed").id == "Renamed"


def test_a_full_disk_leaves_no_half_adapter(smol_adapter: Path, adapters_dir: Path,
                                            models: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(target: object, data: memoryview) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_import, "_write_chunk", full)
    with pytest.raises(ModelImportFailed, match=r"The disk is full"):
        import_adapter(smol_adapter, adapters_dir, models)
    assert nothing_imported(adapters_dir)


def test_an_adapter_imported_as_a_model_is_sent_to_adapters(smol_adapter: Path,
                                                            tmp_path: Path) -> None:
    with pytest.raises(ModelImportFailed, match=r"is a LoRA adapter, not a model.*bastion adapters import"):
        import_model(smol_adapter, tmp_path / "models", embedded_sha256="0" * 64)


# -- the catalog --------------------------------------------------------------------------------


def test_verify_detects_a_changed_file(smol_adapter: Path, adapters_dir: Path,
                                       models: Catalog) -> None:
    catalog = AdapterCatalog(adapters_dir)
    import_adapter(smol_adapter, adapters_dir, models)
    assert [(r.entry_id, r.state, r.ok) for r in catalog.verify_all()] == [
        ("facts", "verified", True)]
    copy = adapters_dir / "facts.gguf"
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0x01  # inside tensor data: still a valid adapter, no longer the imported bytes
    copy.write_bytes(bytes(data))
    assert catalog.resolve("facts").verified == "unchecked"  # the cached hash no longer applies
    result = catalog.verify("facts")
    assert (result.state, result.ok) == ("mismatch", False)
    assert "Remove it and import it again" in result.message
    with pytest.raises(AdapterError, match=r"facts has changed since it was imported"):
        resolve_adapter("facts", adapters_dir)


def test_a_broken_file_in_the_folder_is_listed_with_its_reason(adapters_dir: Path) -> None:
    adapters_dir.mkdir(parents=True)
    factory.write_tiny_gguf(adapters_dir / "a-model.gguf")
    (entry,) = AdapterCatalog(adapters_dir).entries()
    assert (entry.id, entry.origin, entry.verified, entry.usable) == (
        "a-model", "folder", "invalid", False)
    assert entry.error is not None and "is a model, not a LoRA adapter" in entry.error
    assert not AdapterCatalog(adapters_dir).verify("a-model").ok
    with pytest.raises(InvalidAdapterFile, match=r"is a model"):
        resolve_adapter("a-model", adapters_dir)


def test_remove_deletes_the_file_and_its_record(smol_adapter: Path, adapters_dir: Path,
                                                models: Catalog) -> None:
    catalog = AdapterCatalog(adapters_dir)
    import_adapter(smol_adapter, adapters_dir, models)
    assert catalog.remove("FACTS").id == "facts"  # names are matched forgivingly
    assert nothing_imported(adapters_dir) and catalog.entries() == []
    with pytest.raises(AdapterNotFound, match=r"No adapter called 'facts'. Known adapters: none yet"):
        catalog.remove("facts")


def test_remove_of_an_unknown_name_lists_the_known_ones(smol_adapter: Path, adapters_dir: Path,
                                                        models: Catalog) -> None:
    import_adapter(smol_adapter, adapters_dir, models)
    with pytest.raises(AdapterNotFound, match=r"No adapter called 'nope'. Known adapters: facts."):
        AdapterCatalog(adapters_dir).remove("nope")
    assert (adapters_dir / "facts.gguf").is_file()


# -- NAME[:SCALE] -------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "name", "scale"), [
    ("facts", "facts", 1.0), ("facts:0.5", "facts", 0.5), ("facts:-4", "facts", -4.0),
    ("facts:4", "facts", 4.0), ("facts:0", "facts", 0.0), (" facts:1e-1 ", "facts", 0.1),
])
def test_a_spec_gives_name_and_scale(spec: str, name: str, scale: float) -> None:
    parsed = parse_adapter_spec(spec)
    assert (parsed.name, parsed.scale) == (name, scale)


@pytest.mark.parametrize(("spec", "message"), [
    ("facts:4.5", "must be between -4 and 4 \\(got 4.5\\)"),
    ("facts:-5", "must be between -4 and 4 \\(got -5\\)"),
    ("facts:nan", "must be between -4 and 4"),
    ("facts:inf", "must be between -4 and 4"),
    ("facts:strong", "The scale in 'facts:strong' is not a number"),
    ("facts:", "is not a number"),
])
def test_a_scale_outside_minus_4_to_4_is_refused(spec: str, message: str) -> None:
    with pytest.raises(InvalidAdapterScale, match=message):
        parse_adapter_spec(spec)


def test_a_spec_without_a_name_is_refused() -> None:
    with pytest.raises(AdapterNotFound, match=r"names no adapter"):
        parse_adapter_spec(":0.5")


def test_resolve_checks_the_adapter_against_the_base(
        tmp_path: Path, smol_adapter: Path, adapters_dir: Path, models: Catalog,
        smollm2_path: Path) -> None:
    import_adapter(smol_adapter, adapters_dir, models)
    dest = adapters_dir / "facts.gguf"
    assert resolve_adapter("facts:0.5", adapters_dir, base=smollm2_path) == (dest, 0.5)
    assert resolve_adapter("facts", adapters_dir, base=read_gguf_info(smollm2_path)) == (dest, 1.0)
    assert resolve_adapter("facts:-1", adapters_dir) == (dest, -1.0)  # no base: no shape check
    tiny_base = write_base_gguf(tmp_path / "Tiny-Base.gguf")
    with pytest.raises(AdapterMismatch, match=r"facts.gguf does not fit Tiny-Base: this adapter "
                                              r"is for a model with hidden size 576; Tiny-Base has 64"):
        resolve_adapter("facts", adapters_dir, base=tiny_base)
    with pytest.raises(InvalidAdapterScale):
        resolve_adapter("facts:9", adapters_dir, base=smollm2_path)
    with pytest.raises(AdapterNotFound, match=r"No adapter called 'other'"):
        resolve_adapter("other", adapters_dir)
    with pytest.raises(AdapterError, match=r"given twice"):
        resolve_adapters(["facts:1", "facts:0.5"], adapters_dir)
    assert resolve_adapters([], adapters_dir, base=tmp_path / "never-read.gguf") == []
    catalog = AdapterCatalog(adapters_dir)
    assert catalog.path_of("Facts", base=smollm2_path) == dest
    with pytest.raises(AdapterMismatch):
        catalog.path_of("facts", base=read_gguf_info(tiny_base))


def test_every_adapter_error_is_a_model_error() -> None:
    for error in (AdapterError, AdapterMismatch, AdapterNotFound, InvalidAdapterFile,
                  InvalidAdapterScale):
        assert issubclass(error, ModelError)


def test_shipped_adapters_are_listed_verified_and_cannot_be_removed(
    smol_adapter: Path, adapters_dir: Path, models: Catalog, tmp_path: Path
) -> None:
    shipped = tmp_path / "site-packages" / "embedded_adapters"
    import_adapter(smol_adapter, shipped, models)  # how the shipped folder and manifest are made
    catalog = AdapterCatalog(adapters_dir, embedded_dir=shipped)
    [entry] = catalog.entries(hash_files=True)
    assert (entry.id, entry.origin, entry.verified) == ("facts", "embedded", "verified")
    assert catalog.path_of("facts", models.resolve(SMOLLM2_ID).path) == shipped / "facts.gguf"
    assert catalog.verify("facts").state == "verified"
    with pytest.raises(ModelError, match="ships with Bastion"):
        catalog.remove("facts")
    assert (shipped / "facts.gguf").exists()

    # Damaged in place: caught before it is attached, and verify says to reinstall.
    data = bytearray((shipped / "facts.gguf").read_bytes())
    data[-1] ^= 0xFF
    (shipped / "facts.gguf").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="changed since"):
        catalog.path_of("facts")
    assert "Reinstall Bastion" in catalog.verify("facts").message

    # Without the shipped folder nothing else changes.
    assert AdapterCatalog(adapters_dir, embedded_dir=None).entries() == []
