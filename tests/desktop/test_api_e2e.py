"""The local API end to end: real SmolLM2 and MiniLM, the official openai client, loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from bastion.desktop.api.access_token import load_or_create_token
from bastion.desktop.api.server import ApiServer
from bastion.desktop.api.service import AnswerService
from bastion.desktop.api.wiring import service_parts
from bastion.desktop.app import App
from bastion.desktop.library import add_collection

pytestmark = [pytest.mark.slow, pytest.mark.allow_hosts(["127.0.0.1"])]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str, str]]:
    home = tmp_path_factory.mktemp("home")
    docs = tmp_path_factory.mktemp("docs")
    (docs / "vault.txt").write_text("Security procedures.\n\nThe access code for the north vault "
                                    "is 4417. Only the night supervisor may open it.", encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("BASTION_HOME", str(home))
    with App() as app:
        app.settings.n_ctx = 2048
        add_collection(app.library, "office", [docs])
        for _ in app.library.sync("office"):
            pass
        parts = service_parts(app)
        token = load_or_create_token(app.paths.home)[0]
        server = ApiServer(AnswerService(parts), token, port=0)
        server.start()
        try:
            yield server, token, parts.chat_model
        finally:
            server.stop()
    mp.undo()


def test_the_real_model_answers_streams_cites_and_embeds(served: tuple[ApiServer, str, str]) -> None:
    server, token, model = served
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=token,
                           max_retries=0, timeout=300)
    assert model in [m.id for m in client.models.list()]

    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the access code for the north vault?"}],
        max_tokens=32, temperature=0, extra_body={"bastion": {"collections": ["office"]}})
    assert "4417" in (completion.choices[0].message.content or "")
    citations = completion.model_extra["bastion"]["citations"]
    assert citations and Path(citations[0]["file"]).name == "vault.txt"

    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello in one short sentence."}],
        max_tokens=16, temperature=0, stream=True) if c.choices]
    assert len([p for p in pieces if p]) > 1 and "".join(pieces).strip()

    embeddings = client.embeddings.create(model=server.service.parts.embedding_model or "",
                                          input=["north vault", "cafeteria"])
    assert [len(d.embedding) for d in embeddings.data] == [384, 384]
