"""Checkpoints of a fine-tuning run: LoRA weights, AdamW state and progress, without pickle.

A checkpoint is a folder: ``weights.safetensors`` (the trainable tensors by parameter name),
``optimizer.safetensors`` (AdamW's moments and step per parameter) and ``state.json`` (step, loss
curve, the settings fingerprint). It is written beside the previous one and swapped in with
renames, so a crash or a full disk at any instant leaves a whole checkpoint: the new one, or the
old one (``checkpoint.old`` between the two renames, which loading accepts).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .file_hashes import fsync_dir, write_json_atomic
from .finetune_types import FinetuneError

CURRENT = "checkpoint"
PREVIOUS = "checkpoint.old"
_MOMENTS = ("exp_avg", "exp_avg_sq")


@dataclass
class Checkpoint:
    path: Path
    state: dict[str, Any]
    weights: dict[str, Any]  # name → torch tensor
    optimizer: dict[str, Any]  # "<name>.<moment>" → torch tensor

    @property
    def step(self) -> int:
        return int(self.state["step"])


def save_checkpoint(work_dir: Path, params: dict[str, Any], optimizer: Any,
                    state: dict[str, Any]) -> Path:
    """Write a checkpoint of ``params`` (name → trainable tensor) and AdamW ``optimizer``.

    Raises:
        FinetuneError: the disk is full or not writable; the previous checkpoint is kept.
    """
    from safetensors.torch import save_file

    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    current, previous = work_dir / CURRENT, work_dir / PREVIOUS
    tmp = work_dir / f".checkpoint.{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        save_file({n: p.detach().contiguous() for n, p in params.items()}, tmp / "weights.safetensors")
        moments: dict[str, Any] = {}
        for name, param in params.items():
            slot = optimizer.state.get(param)
            if not slot:
                continue
            for key in _MOMENTS:
                moments[f"{name}.{key}"] = slot[key].contiguous()
            moments[f"{name}.step"] = slot["step"].reshape(1).float()
        save_file(moments, tmp / "optimizer.safetensors")
        write_json_atomic(tmp / "state.json", state)
        for file in tmp.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        if current.exists():
            shutil.rmtree(previous, ignore_errors=True)
            current.rename(previous)
        tmp.rename(current)
        fsync_dir(work_dir)
        shutil.rmtree(previous, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = _existing(work_dir)
        where = f"; the checkpoint at step {_step_of(kept)} is kept" if kept else ""
        raise FinetuneError(
            f"The checkpoint could not be written in {work_dir} ({error.strerror or error}){where}. "
            "Free some disk space, then resume the training."
        ) from error
    return current


def _existing(work_dir: Path) -> Path | None:
    for name in (CURRENT, PREVIOUS):
        if (work_dir / name / "state.json").is_file():
            return work_dir / name
    return None


def _step_of(path: Path) -> int | str:
    try:
        return int(json.loads((path / "state.json").read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def load_checkpoint(work_dir: Path) -> Checkpoint | None:
    """The last whole checkpoint in ``work_dir``, or None if there is none.

    Raises:
        FinetuneError: a checkpoint exists but cannot be read.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _existing(work_dir)
    if path is None:
        return None
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        weights = load_file(path / "weights.safetensors")
        optimizer = load_file(path / "optimizer.safetensors")
    except (OSError, ValueError, SafetensorError) as error:
        raise FinetuneError(
            f"The checkpoint in {path} is damaged ({error}); start the training again without "
            "resuming."
        ) from error
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise FinetuneError(f"The checkpoint in {path} has no step; start again without resuming.")
    return Checkpoint(path, state, weights, optimizer)


def restore(checkpoint: Checkpoint, params: dict[str, Any], optimizer: Any) -> None:
    """Copy the checkpoint's weights into ``params`` and its moments into ``optimizer``."""
    import torch

    missing = [n for n in params if n not in checkpoint.weights]
    if missing:
        raise FinetuneError(f"The checkpoint in {checkpoint.path} does not match this model "
                            f"(it lacks {missing[0]}); start again without resuming.")
    with torch.no_grad():
        for name, param in params.items():
            saved = checkpoint.weights[name]
            if saved.shape != param.shape:
                raise FinetuneError(f"The checkpoint in {checkpoint.path} has another shape for "
                                    f"{name}; start again without resuming.")
            param.copy_(saved)
            if f"{name}.step" in checkpoint.optimizer:
                optimizer.state[param] = {
                    "step": checkpoint.optimizer[f"{name}.step"].reshape(()).float(),
                    **{k: checkpoint.optimizer[f"{name}.{k}"].clone() for k in _MOMENTS},
                }


def remove_checkpoints(work_dir: Path) -> None:
    """Delete the checkpoints (after the adapter is written); the folder goes if left empty."""
    for name in (CURRENT, PREVIOUS):
        shutil.rmtree(work_dir / name, ignore_errors=True)
    with contextlib.suppress(OSError):
        work_dir.rmdir()
