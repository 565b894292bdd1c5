"""The model side of fine-tuning: load a GGUF base into transformers with LoRA, batch, and loss.

Loading is local and offline: transformers dequantizes the GGUF (``gguf_file=``) to float32, no
hub, no remote code. The loss is computed on answer tokens only, through the output layer in
chunks (see ``batch_loss``), which is what keeps memory flat with a 49k-word vocabulary.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .finetune_tokens import TokenizedExample
from .finetune_types import FinetuneConfig, FinetuneError, UnsupportedBaseModel
from .gguf_file import GGUFInfo
from .lora_gguf import FloatArray, LoraBase

# Bytes of activations kept for the backward pass, per token, decoder layer and unit of hidden
# size, in a float32 LoRA step without gradient checkpointing: ~38 hidden-sized tensors per token
# and layer (norms, q/k/v, rotary, attention, the 1536-wide MLP, LoRA's inputs). Measured on
# SmolLM2-135M: 504 tokens peak 2.5 GB, 2904 tokens 8.9 GB, with ~1.2 GB for model and runtime.
ACTIVATION_BYTES_PER_TOKEN_LAYER_HIDDEN = 150
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
# OpenMP threads that spin while waiting for each other lose badly when the cores are shared
# (the engine, indexing and the desktop run beside a training): measured on 2 busy cores, a step
# took 27–33 s spinning and 9.9 s with sleeping threads.
_THREADING = {"OMP_WAIT_POLICY": "PASSIVE"}


def prepare_environment() -> None:
    """Set the training process's environment; call it before torch or transformers is imported
    (the offline switches are forced, the threading default can be overridden by the user)."""
    os.environ.update(_OFFLINE)
    for key, value in _THREADING.items():
        os.environ.setdefault(key, value)


class TrainingCancelled(Exception):
    """Raised inside a step when the caller asked to stop."""


@dataclass
class Batch:
    ids: Any  # LongTensor [batch, time]; ids.numel() is the step's size, padding included
    targets: Any  # BoolTensor [batch, time]: token t is learnt
    attention: Any  # LongTensor [batch, time], or None when nothing is padded
    tokens: int  # real tokens (padding excluded)


@dataclass
class BaseModel:
    """A base model with LoRA layers, its tokenizer and what the loop needs to know about it."""

    model: Any  # peft.PeftModel
    tokenizer: Any
    pad_id: int
    add_bos: bool
    _checkpoint_every: int | None = field(default=None, init=False)

    @property
    def inner(self) -> Any:
        """The transformers causal LM (with LoRA layers injected)."""
        return self.model.get_base_model()

    @property
    def layers(self) -> Sequence[Any]:
        return list(self.inner.model.layers)

    def checkpoint_every(self, config: FinetuneConfig, padded_tokens: int) -> int | None:
        """For a step of ``padded_tokens``: None to keep every layer's activations, else n to
        recompute every n-th layer's in the backward pass.

        "auto" checkpoints only what the activation budget needs: a step whose activations would
        be 1.3× the budget checkpoints every 4th layer (about 8% more time), not every layer
        (about 50% more: a whole extra forward pass).
        """
        if config.gradient_checkpointing != "auto":
            return 1 if config.gradient_checkpointing == "on" else None
        cfg = self.inner.config
        full = float(padded_tokens * cfg.num_hidden_layers * cfg.hidden_size
                     * ACTIVATION_BYTES_PER_TOKEN_LAYER_HIDDEN)
        budget = config.activation_budget_mb << 20
        if full <= budget:
            return None
        # Checkpointing every n-th layer keeps about (1 - 1/n) of the activations.
        return max(1, math.floor(1 / (1 - budget / full)))

    def set_checkpointing(self, every: int | None) -> None:
        """Apply ``checkpoint_every``'s answer (cheap: it only flags the layers)."""
        if every == self._checkpoint_every:
            return
        if every is None:
            self.inner.activation_checkpointing_disable()
        else:
            self.inner.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}, every_n_layers=every)
        self._checkpoint_every = every

    def lora_state(self) -> dict[str, FloatArray]:
        """The LoRA factors as PEFT names them, as float32 numpy arrays."""
        from peft import get_peft_model_state_dict

        # (save_embedding_layers=False: the embeddings are not adapted, and peft would otherwise
        # look the base model up on the hub to check its vocabulary.)
        state = get_peft_model_state_dict(self.model, save_embedding_layers=False)
        return {k: np.asarray(v.detach().float().cpu().numpy()) for k, v in state.items()}

    def lora_base(self, info: GGUFInfo, sha256: str | None) -> LoraBase:
        cfg = self.inner.config
        return LoraBase(architecture=info.architecture or "", n_head=int(cfg.num_attention_heads),
                        n_head_kv=int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads),
                        name=info.name, sha256=sha256)


def load_dequantized(base: Path, *, base_sha256: str, cache_dir: Path | None) -> tuple[Any, Any]:
    """The float32 transformers model and tokenizer of a GGUF base, from ``cache_dir`` (by the
    base's SHA-256) when it holds them, else from the GGUF (then saved there).

    transformers spends ~35 s on SmolLM2-135M's GGUF (it parses the 49k-token vocabulary three
    times and maps tensor names slowly); the same weights saved as safetensors load in ~1 s, so
    a resumed run or the next adapter on the same base starts at once.
    """
    prepare_environment()  # no hub, ever (a no-op for threading once torch is imported)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # The environment switch is read when transformers is first imported, which may have been
    # earlier: its GGUF conversion bar would fill the user's terminal with carriage returns.
    transformers_logging.disable_progress_bar()
    safe: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    cached = cache_dir / base_sha256 if cache_dir else None
    if cached is not None and (cached / "model.safetensors").is_file():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(cached), **safe)
            model = AutoModelForCausalLM.from_pretrained(str(cached), dtype=torch.float32,
                                                         use_safetensors=True, **safe)
            return model, tokenizer
        except (OSError, ValueError, KeyError, RuntimeError):
            shutil.rmtree(cached, ignore_errors=True)  # damaged: made again below
    folder, name = str(base.parent), base.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, **safe)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, **safe)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise FinetuneError(f"{name} could not be loaded for training ({error}).") from error
    # The weights are plain float32 now; saved with the GGUF marker they would not load.
    del model.config.quantization_config
    model.hf_quantizer = None
    if cached is not None:
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True, mode=0o700)
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
            shutil.rmtree(cached, ignore_errors=True)
            tmp.rename(cached)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a cache: training goes on without it
    return model, tokenizer


def load_base_model(config: FinetuneConfig, info: GGUFInfo, base_sha256: str) -> BaseModel:
    """Load the GGUF base dequantized to float32 and wrap it with fresh LoRA layers.

    Raises:
        UnsupportedBaseModel: transformers cannot load this architecture from GGUF.
        FinetuneError: the file could not be loaded (the message says why).
    """
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if info.architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise UnsupportedBaseModel(
            f"transformers cannot load {info.architecture!r} models from GGUF, so "
            f"{config.base.name} cannot be fine-tuned here.")
    torch.set_num_threads(config.n_threads or os.cpu_count() or 1)
    model, tokenizer = load_dequantized(config.base, base_sha256=base_sha256,
                                        cache_dir=config.cache_dir)
    model.config.use_cache = False
    torch.manual_seed(config.seed)  # LoRA's A is initialised at random
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.targets), bias="none",
                      task_type=TaskType.CAUSAL_LM)
    with warnings.catch_warnings():
        # peft 0.21 reads a property transformers 5 deprecated; nothing a user can act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, lora)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    add_bos = info.metadata.get("tokenizer.ggml.add_bos_token")
    if not isinstance(add_bos, bool):
        probe = tokenizer("a").input_ids
        add_bos = bool(probe) and probe[0] == tokenizer.bos_token_id
    return BaseModel(peft_model, tokenizer, int(pad or 0), add_bos)


def batch_tensors(examples: Sequence[TokenizedExample], pad_id: int) -> Batch:
    """Right-padded tensors of a batch (padding never attends backwards into real tokens)."""
    import torch

    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    targets = torch.zeros((len(examples), width), dtype=torch.bool)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.ids)
        ids[row, :n] = torch.tensor(e.ids, dtype=torch.long)
        targets[row, :n] = torch.tensor(e.targets, dtype=torch.bool)
        attention[row, :n] = 1
    tokens = int(attention.sum())
    # Without padding, no mask lets attention take its fastest causal path.
    return Batch(ids, targets, None if tokens == attention.numel() else attention, tokens)


def _ce_sum(hidden: Any, labels: Any, weight: Any, bias: Any) -> Any:
    import torch.nn.functional as F

    logits = F.linear(hidden, weight, bias)
    return F.cross_entropy(logits.float(), labels, reduction="sum")


def batch_loss(base: BaseModel, batch: Batch, chunk: int) -> tuple[Any, int]:
    """Summed cross-entropy over the batch's answer tokens, and how many there are.

    The decoder runs on every token, but the output layer only on positions whose next token
    is learnt, ``chunk`` at a time; with gradients on, each chunk is recomputed in the backward
    pass instead of keeping its [chunk × vocabulary] logits.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    inner = base.inner
    hidden = inner.model(input_ids=batch.ids, attention_mask=batch.attention,
                         use_cache=False).last_hidden_state
    learnt = batch.targets[:, 1:]
    h = hidden[:, :-1][learnt]
    y = batch.ids[:, 1:][learnt]
    n = int(y.numel())
    if n == 0:
        raise FinetuneError("A batch has no answer tokens to learn.")
    head = inner.get_output_embeddings()
    total: Any = None
    for start in range(0, n, chunk):
        args = (h[start:start + chunk], y[start:start + chunk], head.weight, head.bias)
        part = (checkpoint(_ce_sum, *args, use_reentrant=False)
                if torch.is_grad_enabled() and n > chunk else _ce_sum(*args))
        total = part if total is None else total + part
    return total, n


class CancelHooks:
    """Checks ``should_cancel`` before every decoder layer, in the forward pass and (through
    gradient hooks on the layers' outputs) in the backward pass, so a long step stops within a
    layer's time instead of running to its end."""

    def __init__(self, base: BaseModel, should_cancel: Callable[[], bool]) -> None:
        self._layers = base.layers
        self._should_cancel = should_cancel
        self._handles: list[Any] = []

    def check(self) -> None:
        if self._should_cancel():
            raise TrainingCancelled

    def _grad_hook(self, grad: Any) -> None:
        self.check()

    def _pre(self, module: Any, args: Any) -> None:
        self.check()

    def _post(self, module: Any, args: Any, output: Any) -> None:
        tensor = output[0] if isinstance(output, tuple) else output
        if getattr(tensor, "requires_grad", False):
            tensor.register_hook(self._grad_hook)

    def __enter__(self) -> CancelHooks:
        for layer in self._layers:
            self._handles.append(layer.register_forward_pre_hook(self._pre))
            self._handles.append(layer.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
