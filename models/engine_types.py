"""Plain records exchanged with the engine. Only plain data crosses the process boundary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model.

    Args:
        n_ctx: context window in tokens (prompt + answer).
        n_threads: CPU threads for generation; None = all physical cores.
        n_gpu_layers: layers to offload to a GPU, when llama.cpp was built with one.
        n_batch: the most prompt tokens decoded per llama.cpp call.
        cpu_kernels: which of llama.cpp's CPU kernel sets to run: "auto" (the best this CPU
            supports, AMX held back), "baseline" (the most conservative) or a variant name
            ("haswell", "zen4", …; see ``bastion doctor``).
        use_extra_bufts: let llama.cpp repack weights into CPU-specific layouts (AMX, AVX2
            interleaved); the engine's self-test turns it off where it crashes.
        use_mmap: map the model file instead of reading it into memory.
    """

    n_ctx: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int = 0
    n_batch: int = 128
    cpu_kernels: str = "auto"
    use_extra_bufts: bool = True
    use_mmap: bool = True


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters. ``temperature`` 0 means greedy decoding."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AdapterUse:
    """A LoRA adapter applied to the loaded model at ``scale`` (0 = no effect, 1 = as trained).

    ``path`` must be an adapter the catalog validated against the loaded base.
    """

    path: str
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "scale": self.scale}


@dataclass(frozen=True)
class LoadInfo:
    path: Path
    name: str
    n_ctx: int
    n_ctx_train: int
    n_threads: int
    template_source: str  # "gguf" or "default"
    template_warning: str | None
    special_tokens: int
    load_s: float
    cpu_kernels: str = "built-in"  # the CPU variant llama.cpp runs in the engine
    # A safer setting the self-test put in force on this machine, in words; None when the
    # defaults work. ``fallback_is_new`` is True on the load that found it (tell the user once).
    fallback: str | None = None
    fallback_is_new: bool = False


@dataclass(frozen=True)
class ChatDelta:
    """A piece of the answer as it streams."""

    text: str
    tokens: int = 1


@dataclass(frozen=True)
class ChatStats:
    """What one answer cost. Times are seconds; rates are tokens per second."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the previous turn's KV cache
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    generated_tokens: int = 0
    generation_s: float = 0.0
    time_to_first_token_s: float = 0.0
    finish_reason: str = "stop"  # "stop", "length" or "cancelled"
    dropped_messages: int = 0  # oldest messages left out to fit the context
    template_warning: str | None = None
    adapter_switch_s: float = 0.0  # time to change the adapters before this answer (0 = unchanged)

    @property
    def prefill_tps(self) -> float:
        return self.prefill_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def generation_tps(self) -> float:
        # The first generated token comes out of the prefill; the rate counts the decode steps.
        steps = max(self.generated_tokens - 1, 0)
        return steps / self.generation_s if self.generation_s > 0 else 0.0


@dataclass(frozen=True)
class ChatDone:
    """The last event of a chat: the answer is complete, cut at max tokens, or cancelled."""

    stats: ChatStats = field(default_factory=ChatStats)


ChatEvent = ChatDelta | ChatDone
