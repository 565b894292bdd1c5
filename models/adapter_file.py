"""Read a LoRA adapter's GGUF header and check that it fits a base model, as llama.cpp will.

An adapter passes the same bounded header checks as a model (:func:`read_gguf_info`: magic,
counts, string lengths, every tensor inside the file), then what llama.cpp's
``llama_adapter_lora_init`` demands (``src/llama-adapter.cpp``): ``general.type = adapter``,
``adapter.type = lora``, tensors named ``<base weight>.lora_a`` / ``.lora_b`` in complete pairs,
and, against a base, the same architecture, every adapted weight present, ``A.ne[0]`` equal to the
weight's ``ne[0]``, ``B.ne[1]`` to its ``ne[1]`` and ``A.ne[1] == B.ne[0]`` (the rank). llama.cpp
says "maybe wrong base model?" when they differ; here the message names the difference
("hidden size 896; SmolLM2-135M has 576") and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import model_id
from .errors import InvalidModelFile, ModelError, ModelNotFound
from .gguf_file import GGUFInfo, MetadataValue, read_gguf_info
from .lora_gguf import BASE_SHA256_KEY, LORA_A_SUFFIX, LORA_B_SUFFIX

# Adapters may carry norm vectors, which llama.cpp skips (see its loader); anything else is refused.
_IGNORED_SUFFIX = "_norm.weight"
_BLOCK = re.compile(r"^blk\.(\d+)\.")
# Weights whose input (A's ne[0]) is the hidden size, and whose output (B's ne[1]) is.
_HIDDEN_IN = ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up")
_HIDDEN_OUT = ("attn_output", "ffn_down")
_TOKEN_EMBD = "token_embd.weight"


class AdapterError(ModelError):
    """A LoRA adapter cannot be imported, found or used; the message says why and what to do."""


class InvalidAdapterFile(AdapterError, InvalidModelFile):
    """The file is a valid GGUF but not a LoRA adapter llama.cpp can attach."""


class AdapterMismatch(AdapterError):
    """The adapter was made for another base model (architecture or tensor shapes differ)."""


class AdapterNotFound(AdapterError, ModelNotFound):
    """No adapter by that name or path."""


@dataclass(frozen=True)
class LoraWeight:
    """One adapted base weight: the shapes of its A and B factors (llama.cpp's ``ne`` order)."""

    weight: str  # the base tensor, e.g. "blk.0.attn_q.weight"
    a_shape: tuple[int, ...]  # (in, rank)
    b_shape: tuple[int, ...]  # (rank, out)

    @property
    def rank(self) -> int:
        return self.a_shape[1]


@dataclass(frozen=True)
class AdapterInfo:
    """What a validated LoRA adapter says about itself (no tensor data was read).

    ``hidden_size`` and ``layers`` come from the tensor shapes, so they hold whatever the
    metadata says; ``base_name`` and ``base_sha256`` are what the adapter names as its base
    (``general.base_model.0.name``, Bastion's ``bastion.base_model.sha256``), when it does.
    """

    path: Path
    file_size: int
    name: str | None  # general.name
    architecture: str
    alpha: float | None  # adapter.lora.alpha (llama.cpp scales by scale · alpha / rank)
    ranks: tuple[int, ...]  # the distinct ranks, usually one
    weights: tuple[LoraWeight, ...] = field(repr=False)
    hidden_size: int | None
    layers: tuple[int, ...]  # the adapted block indices, ascending
    base_name: str | None
    base_sha256: str | None
    tensor_type: str | None  # e.g. "F32", "F16"
    gguf: GGUFInfo = field(repr=False)

    @property
    def label(self) -> str:
        """How messages name it: its file name."""
        return self.path.name

    @property
    def targets(self) -> tuple[str, ...]:
        """The kinds of weight it adapts, e.g. ("attn_q", "attn_v")."""
        return tuple(dict.fromkeys(_stem(w.weight) for w in self.weights))


def _text(value: MetadataValue | None) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _int(value: MetadataValue | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stem(weight: str) -> str:
    """``blk.3.attn_q.weight`` → ``attn_q``."""
    return _BLOCK.sub("", weight).removesuffix(".weight")


def read_adapter_info(path: Path) -> AdapterInfo:
    """Validate a LoRA adapter file and read what it says about itself and its base.

    Args:
        path: the adapter ``.gguf``.

    Returns:
        The adapter's metadata and tensor shapes.

    Raises:
        AdapterNotFound: there is no file at ``path``.
        InvalidModelFile: not a GGUF that llama.cpp can safely open (damaged, cut short, absurd
            counts); ``InvalidAdapterFile`` when it is a GGUF but not a LoRA adapter.
    """
    path = Path(path)
    try:
        info = read_gguf_info(path)
    except ModelNotFound:
        raise AdapterNotFound(f"There is no adapter file at {path}. Check the path and try "
                              "again.") from None
    meta = info.metadata
    kind = _text(meta.get("general.type"))
    if kind != "adapter":
        raise InvalidAdapterFile(
            f"{path.name} is a model, not a LoRA adapter (its general.type is "
            f"{kind or 'not set'!r}, an adapter's is 'adapter'). Import models with `bastion "
            "models import`; choose an adapter .gguf here.")
    adapter_type = _text(meta.get("adapter.type"))
    if adapter_type != "lora":
        raise InvalidAdapterFile(
            f"{path.name} is a {adapter_type or 'untyped'!r} adapter; Bastion attaches LoRA "
            "adapters only (adapter.type = 'lora'). Convert it with llama.cpp's "
            "convert_lora_to_gguf.py, or choose a LoRA adapter.")
    architecture = _text(meta.get("general.architecture"))
    if architecture is None:
        raise InvalidAdapterFile(f"{path.name} does not say which model architecture it is for "
                                 "(general.architecture); llama.cpp refuses it. Re-export it.")
    alpha = meta.get("adapter.lora.alpha")
    if alpha is not None and not isinstance(alpha, float):
        raise InvalidAdapterFile(f"{path.name} has an adapter.lora.alpha that is not a number "
                                 f"({alpha}); re-export the adapter.")
    weights = _pairs(path, info.tensor_shapes)
    layers = sorted({int(m.group(1)) for w in weights if (m := _BLOCK.match(w.weight))})
    return AdapterInfo(
        path=path,
        file_size=info.file_size,
        name=info.name,
        architecture=architecture,
        alpha=alpha,
        ranks=tuple(sorted({w.rank for w in weights if w.weight != _TOKEN_EMBD})),
        weights=tuple(weights),
        hidden_size=_hidden_size(weights),
        layers=tuple(layers),
        base_name=_text(meta.get("general.base_model.0.name")),
        base_sha256=(_text(meta.get(BASE_SHA256_KEY)) or "").lower() or None,
        tensor_type=info.quantization,
        gguf=info,
    )


def _pairs(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> list[LoraWeight]:
    halves: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, dims in shapes.items():
        if name.endswith(LORA_A_SUFFIX):
            halves.setdefault(name.removesuffix(LORA_A_SUFFIX), {})["a"] = dims
        elif name.endswith(LORA_B_SUFFIX):
            halves.setdefault(name.removesuffix(LORA_B_SUFFIX), {})["b"] = dims
        elif not name.endswith(_IGNORED_SUFFIX):
            raise InvalidAdapterFile(
                f"{path.name} holds the tensor {name!r}, which is not a LoRA factor (names end "
                f"in {LORA_A_SUFFIX} or {LORA_B_SUFFIX}); llama.cpp refuses it. Re-export the "
                "adapter.")
    weights: list[LoraWeight] = []
    for weight, pair in sorted(halves.items(), key=lambda item: _order(item[0])):
        if "a" not in pair or "b" not in pair:
            missing = LORA_B_SUFFIX if "a" in pair else LORA_A_SUFFIX
            raise InvalidAdapterFile(f"{path.name} lacks {weight}{missing}: the adapter is "
                                     "incomplete. Export it again.")
        a, b = pair["a"], pair["b"]
        if len(a) != 2 or len(b) != 2:
            raise InvalidAdapterFile(f"{path.name} has LoRA factors of {weight} that are not "
                                     f"matrices ({list(a)} and {list(b)}); re-export it.")
        if weight != _TOKEN_EMBD and a[1] != b[0]:
            raise InvalidAdapterFile(
                f"{path.name} has LoRA factors of {weight} whose ranks differ ({a[1]} and "
                f"{b[0]}): it was written by an old or broken exporter. Re-export it with "
                "llama.cpp's convert_lora_to_gguf.py.")
        weights.append(LoraWeight(weight, a, b))
    if not weights:
        raise InvalidAdapterFile(f"{path.name} holds no LoRA weights; choose a trained adapter.")
    return weights


def _order(weight: str) -> tuple[int, str]:
    match = _BLOCK.match(weight)
    return (int(match.group(1)) if match else -1, weight)


def _hidden_size(weights: list[LoraWeight]) -> int | None:
    for weight in weights:
        if _stem(weight.weight) in _HIDDEN_IN:
            return weight.a_shape[0]
    for weight in weights:
        if _stem(weight.weight) in _HIDDEN_OUT:
            return weight.b_shape[1]
    return None


def base_dimensions(base: GGUFInfo) -> tuple[int | None, int | None]:
    """A base model's hidden size and layer count, from its metadata or else its tensors."""
    arch = base.architecture
    meta = base.metadata
    n_embd = _int(meta.get(f"{arch}.embedding_length")) if arch else None
    n_layer = _int(meta.get(f"{arch}.block_count")) if arch else None
    if n_embd is None and _TOKEN_EMBD in base.tensor_shapes:
        n_embd = base.tensor_shapes[_TOKEN_EMBD][0]
    if n_layer is None:
        blocks = {int(m.group(1)) for name in base.tensor_shapes if (m := _BLOCK.match(name))}
        n_layer = max(blocks) + 1 if blocks else None
    return n_embd, n_layer


def fit_problem(adapter: AdapterInfo, base: GGUFInfo) -> str | None:
    """What keeps ``adapter`` from fitting ``base`` (a clause for a message), or None if it fits."""
    base_id = model_id(base.path)
    if base.metadata.get("general.type") == "adapter":
        return f"{base_id} is itself an adapter, not a base model"
    if adapter.architecture != base.architecture:
        return (f"this adapter is for a {adapter.architecture!r} model; {base_id} is "
                f"{base.architecture or 'of an unknown architecture'!r}")
    n_embd, n_layer = base_dimensions(base)
    if adapter.hidden_size is not None and n_embd is not None and adapter.hidden_size != n_embd:
        return (f"this adapter is for a model with hidden size {adapter.hidden_size}; "
                f"{base_id} has {n_embd}")
    if adapter.layers and n_layer is not None and adapter.layers[-1] >= n_layer:
        return (f"this adapter changes layer {adapter.layers[-1] + 1} and {base_id} has "
                f"{n_layer} layers")
    for weight in adapter.weights:
        shape = base.tensor_shapes.get(weight.weight)
        if shape is None:
            return f"this adapter changes {weight.weight}, which {base_id} does not have"
        if len(shape) != 2:
            return f"{weight.weight} of {base_id} is not a matrix ({list(shape)})"
        a, b = weight.a_shape, weight.b_shape
        # llama.cpp reads the token embedding's pair flipped (see llm_build_inp_embd).
        expected = (b[1], a[1]) if weight.weight == _TOKEN_EMBD else (a[0], b[1])
        if expected != shape:
            return (f"{weight.weight} is {shape[0]}×{shape[1]} in {base_id}, the adapter "
                    f"expects {expected[0]}×{expected[1]}")
    return None


def check_adapter_fits(adapter: AdapterInfo, base: GGUFInfo) -> None:
    """Refuse an adapter that llama.cpp would refuse (or misapply) on ``base``.

    Args:
        adapter: from :func:`read_adapter_info`.
        base: the base model's header, from :func:`read_gguf_info`.

    Raises:
        AdapterMismatch: the base is itself an adapter, or the architecture, hidden size, layer
            count or a tensor shape differs; the message names the difference and what to do.
    """
    problem = fit_problem(adapter, base)
    if problem is None:
        return
    base_id = model_id(base.path)
    made_for = f" (it names {adapter.base_name!r} as its base)" if adapter.base_name else ""
    raise AdapterMismatch(
        f"{adapter.label} does not fit {base_id}: {problem}. Use it with the model it was "
        f"trained on{made_for}, or choose an adapter trained on {base_id}.")
