"""The engine's warm-up self-test: a few greedy tokens from a fixed prompt, right after loading.

A llama.cpp build that crashes on this CPU (AMX kernels on Sapphire Rapids, a variant using an
instruction the CPU lacks) crashes here, at load, where the parent can retry with safer settings,
instead of at the user's first question. Garbage logits (NaN, infinite, all equal) fail it too.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import TYPE_CHECKING

import numpy as np

from .engine_fallback import fault_for
from .errors import SelfTestFailed

if TYPE_CHECKING:
    from .engine_worker import LoadedModel

PROMPT = "The capital of France is"
TOKENS = 4


def _check_logits(model: LoadedModel, fault: str | None) -> int:
    """The greedy next token, after checking the logits are finite and not flat."""
    lib = model.lib
    n_vocab = lib.llama_vocab_n_tokens(model.vocab)
    pointer = lib.llama_get_logits_ith(model.ctx, -1)
    if not pointer:
        raise SelfTestFailed("llama.cpp returned no logits at the self-test.")
    logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
    if fault == "garbage":
        logits = np.full(n_vocab, np.nan, dtype=np.float32)
    if not np.isfinite(logits).all() or float(logits.max() - logits.min()) <= 0.0:
        raise SelfTestFailed(
            f"{model.path.name} gave non-finite or flat logits at the engine's self-test."
        )
    return int(np.argmax(logits))


def self_test(model: LoadedModel) -> str:
    """Generate a few tokens; raise ``SelfTestFailed`` (or die) if the engine cannot.

    Leaves the KV cache empty, as a freshly loaded model's. Returns the text generated (logs).
    """
    fault = fault_for(model.options)
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    never = lambda: False  # noqa: E731 - nothing cancels the self-test
    lib = model.lib
    pieces: list[int] = []
    try:
        if not model._decode(model.tokenize(PROMPT), 0, never):
            raise SelfTestFailed("the self-test's prefill did not finish")
        for _ in range(TOKENS):
            token = _check_logits(model, fault)
            if lib.llama_vocab_is_eog(model.vocab, token):
                break
            pieces.append(token)
            if not model._decode([token], len(model.cached), never):
                raise SelfTestFailed("the self-test's generation did not finish")
    except RuntimeError as error:  # llama_decode reported a failure
        raise SelfTestFailed(f"llama.cpp failed at the self-test: {error}") from error
    finally:
        lib.llama_memory_clear(lib.llama_get_memory(model.ctx), True)
        model.cached.clear()
    return model.llm.detokenize(pieces).decode("utf-8", "replace")
