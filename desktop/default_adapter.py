"""The grounded adapter that ships with Bastion, applied by default to answers from documents.

``models/embedded_adapters/grounded.gguf`` (trained by ``bench/grounded_adapter_recipe.py``)
teaches the embedded SmolLM2 to answer from the passages, cite them as [n] and decline when they
do not hold the answer. A docs- or both-mode answer uses it when the chat chose no adapter of its
own, the ``grounded_adapter`` setting is on, and it fits the loaded model; the answer's record
names it like any adapter. The lab never applies it: its arms say exactly what they use.
"""

from __future__ import annotations

from bastion.models.adapter_catalog import AdapterCatalog
from bastion.models.errors import ModelError
from bastion.models.gguf_file import GGUFInfo

SHIPPED_GROUNDED = "grounded"

AdapterUses = tuple[tuple[str, float], ...]


def default_grounded_adapters(catalog: AdapterCatalog, base: GGUFInfo | None, *,
                              enabled: bool) -> AdapterUses:
    """``(("grounded", 1.0),)`` when the shipped grounded adapter may answer from documents with
    the model ``base``; ``()`` when the setting is off, no such adapter ships, a user's own
    adapter has its name (it is never applied unasked), or it does not fit ``base`` (another
    model, a remote one) or has changed on disk (``bastion adapters verify`` says so)."""
    if not enabled or base is None or catalog.embedded_dir is None:
        return ()
    try:
        entry = catalog.resolve(SHIPPED_GROUNDED)
        if entry.origin != "embedded":
            return ()
        catalog.checked(entry, base)
    except ModelError:
        return ()
    return ((entry.id, 1.0),)
