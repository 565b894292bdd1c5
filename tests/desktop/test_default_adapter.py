"""The shipped grounded adapter answers from documents by default: only when it ships, fits the
loaded model and the setting is on; a chat's own adapters and model mode are left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.desktop.assistant import AnswerDone, Assistant
from bastion.desktop.default_adapter import default_grounded_adapters
from bastion.models.adapter_catalog import AdapterCatalog
from bastion.models.adapter_import import import_adapter
from bastion.models.catalog import Catalog
from bastion.models.engine_types import AdapterUse
from bastion.models.gguf_file import read_gguf_info
from bastion.store.chats import ChatStore
from tests.desktop.fakes import FakeEngine, FakeHit, FakeRetriever
from tests.models.adapter_fixtures import random_lora, write_base_gguf


@pytest.fixture
def shipped(tmp_path: Path, smollm2_path: Path) -> Path:
    """A shipped folder holding an adapter called ``grounded``, made as the recipe's --ship makes it."""
    folder = tmp_path / "site-packages" / "embedded_adapters"
    models = Catalog(tmp_path / "home" / "models", embedded_path=smollm2_path)
    import_adapter(random_lora(tmp_path / "out" / "grounded.gguf"), folder, models)
    return folder


def test_the_shipped_grounded_adapter_is_the_default_for_the_model_it_fits(
    shipped: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    base = read_gguf_info(smollm2_path)
    catalog = AdapterCatalog(tmp_path / "home" / "models" / "adapters", embedded_dir=shipped)
    assert default_grounded_adapters(catalog, base, enabled=True) == (("grounded", 1.0),)
    # Turned off, another model, a remote one (no header), or nothing shipped: none.
    assert default_grounded_adapters(catalog, base, enabled=False) == ()
    other = read_gguf_info(write_base_gguf(tmp_path / "tiny.gguf"))
    assert default_grounded_adapters(catalog, other, enabled=True) == ()
    assert default_grounded_adapters(catalog, None, enabled=True) == ()
    bare = AdapterCatalog(tmp_path / "home" / "models" / "adapters", embedded_dir=tmp_path / "none")
    assert default_grounded_adapters(bare, base, enabled=True) == ()


def test_a_users_own_adapter_called_grounded_is_never_applied_unasked(
    shipped: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    adapters = tmp_path / "home" / "models" / "adapters"
    models = Catalog(tmp_path / "home" / "models", embedded_path=smollm2_path)
    import_adapter(random_lora(tmp_path / "mine" / "grounded.gguf", seed=5), adapters, models)
    catalog = AdapterCatalog(adapters, embedded_dir=shipped)
    assert default_grounded_adapters(catalog, read_gguf_info(smollm2_path), enabled=True) == ()


def test_a_damaged_shipped_adapter_is_not_applied(shipped: Path, smollm2_path: Path, tmp_path: Path) -> None:
    data = bytearray((shipped / "grounded.gguf").read_bytes())
    data[-1] ^= 0xFF
    (shipped / "grounded.gguf").write_bytes(bytes(data))
    catalog = AdapterCatalog(tmp_path / "adapters", embedded_dir=shipped)
    assert default_grounded_adapters(catalog, read_gguf_info(smollm2_path), enabled=True) == ()


@pytest.mark.parametrize(
    ("mode", "own", "used"),
    [
        ("docs", [], (AdapterUse("/a/grounded.gguf", 1.0),)),
        ("both", [], (AdapterUse("/a/grounded.gguf", 1.0),)),
        ("model", [], ()),  # not trained for answers without passages
        ("docs", [("terse", 0.5)], (AdapterUse("/a/terse.gguf", 0.5),)),  # the chat's choice wins
    ],
)
def test_answers_from_documents_use_the_default_unless_the_chat_chose_adapters(
    tmp_path: Path, mode: str, own: list[tuple[str, float]], used: tuple[AdapterUse, ...]
) -> None:
    engine = FakeEngine("[1] Paris is the capital.")
    chats = ChatStore(tmp_path / "bastion.db")
    retriever = FakeRetriever([FakeHit("Paris is the capital of France.", "/d/a.txt")])
    assistant = Assistant(engine=engine, chats=chats, retriever=retriever,
                          adapter_path=lambda name: Path(f"/a/{name}.gguf"),
                          grounded_adapters=(("grounded", 1.0),))
    chat = chats.create_chat(mode=mode, collections=["docs"], adapters=own)
    done = [e for e in assistant.ask(chat.id, "What is the capital of France?")
            if isinstance(e, AnswerDone)][-1]
    assert engine.adapters_used == [used]
    # The record names the adapter that answered, as for any adapter.
    assert done.message.meta["adapters"] == [{"name": Path(u.path).stem, "scale": u.scale} for u in used]
    chats.close()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_grounded_adapter_setting_turns_the_default_on_and_off(
    shipped: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    from bastion.desktop.app import App
    from bastion.desktop.settings import Settings
    from bastion.models import adapter_catalog

    monkeypatch.setattr(adapter_catalog, "EMBEDDED_ADAPTERS_DIR", shipped)
    assert Settings().grounded_adapter is True  # on: it helped on new material too (README)
    app = App()
    app.settings.grounded_adapter = enabled
    engine = FakeEngine()
    engine.gguf_info = read_gguf_info(smollm2_path)  # type: ignore[attr-defined]
    monkeypatch.setattr(app, "engine", lambda model=None: engine)
    assistant = app.assistant(retrieval=False)
    assert assistant.grounded_adapters == ((("grounded", 1.0),) if enabled else ())
    app.close()


@pytest.mark.shipped_adapters
def test_the_grounded_adapter_that_ships_is_verified_small_and_fits_smollm2(
    smollm2_path: Path, tmp_path: Path
) -> None:
    from bastion.models import adapter_catalog

    folder = adapter_catalog.EMBEDDED_ADAPTERS_DIR
    if not (folder / "grounded.gguf").is_file():
        pytest.skip("no grounded adapter ships in this checkout (see bench/grounded_adapter_recipe.py)")
    catalog = AdapterCatalog(tmp_path / "adapters")
    entry = catalog.resolve("grounded")
    assert entry.origin == "embedded" and entry.file_size <= 10_000_000
    assert catalog.verify(entry).state == "verified"
    assert default_grounded_adapters(catalog, read_gguf_info(smollm2_path), enabled=True) == (("grounded", 1.0),)
    record = json.loads((folder / "grounded.training.json").read_text(encoding="utf-8"))
    assert record["adapter"]["sha256"] == entry.expected_sha256
