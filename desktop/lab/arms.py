"""Arms: the routes a question set is answered by — a mode and the LoRA adapters attached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bastion.desktop.errors import BastionError
from bastion.desktop.grounding import MODES, Mode

_MODE_LABELS: dict[str, str] = {"model": "", "docs": " + documents", "both": " + documents (both mode)"}


@dataclass(frozen=True)
class Arm:
    """One route: ``mode`` and the adapters (catalog name, scale) answering with the base model."""

    mode: Mode
    adapters: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        """A stable id for files and resumption, e.g. ``docs`` or ``docs+legal@0.5``."""
        return self.mode + "".join(f"+{name}" + (f"@{scale:g}" if scale != 1 else "")
                                   for name, scale in self.adapters)

    @property
    def label(self) -> str:
        """What a person reads, e.g. "base + adapter legal + documents"."""
        adapters = "".join(f" + adapter {name}" + (f" at {scale:g}" if scale != 1 else "")
                           for name, scale in self.adapters)
        return f"base{adapters}{_MODE_LABELS[self.mode]}"

    @property
    def uses_documents(self) -> bool:
        return self.mode != "model"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "adapters": [[n, s] for n, s in self.adapters]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Arm:
        mode = raw["mode"]
        if mode not in MODES:
            raise BastionError(f"Unknown mode {mode!r} in a lab run; expected one of {', '.join(MODES)}.")
        return cls(mode=mode, adapters=tuple((str(n), float(s)) for n, s in raw.get("adapters", [])))


def make_arms(modes: Sequence[Mode], adapters: Sequence[tuple[str, float]] = (),
              with_documents: bool = True) -> list[Arm]:
    """The arms of a run: every mode for the base model, and for each adapter on its own.

    Args:
        modes: The modes to try (``model``, ``docs``, ``both``).
        adapters: Adapters, each tried alone at its scale, in every mode.
        with_documents: False when there is no collection: only ``model`` arms are possible.

    Raises:
        BastionError: no arm is left (e.g. only document modes and no collection).
    """
    wanted = [m for m in MODES if m in modes and (with_documents or m == "model")]
    if not wanted:
        raise BastionError("No arm to run: the documents modes need --collection NAME.")
    sets: list[tuple[tuple[str, float], ...]] = [()]
    for adapter in adapters:
        if (adapter,) not in sets:
            sets.append((adapter,))
    return [Arm(mode, adapter_set) for adapter_set in sets for mode in wanted]
