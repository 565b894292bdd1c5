"""The engine's child process: one llama.cpp model, driven over a pipe with plain dicts.

Runs in a process started with the ``spawn`` method, so a GGML_ASSERT abort, a segfault or an
out-of-memory kill costs this process only. Generation uses llama.cpp's C sampler chain and one
``llama_decode`` per token with as little Python per token as the bindings allow; the KV cache of
the previous turn is kept, so a follow-up prefills only the tokens it does not share.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .chat_template import (
    SpecialTokenNeutraliser,
    choose_template,
    fit_to_context,
    neutralise_messages,
    plain_messages,
)
from .engine_selftest import self_test
from .engine_types import ChatStats, LoadOptions, Sampling
from .engine_wire import DeltaBatcher, send
from .errors import ModelLoadFailed
from .llama_backends import load_cpu_backend

Reply = dict[str, Any]
ABORTED = 2  # llama_decode's return code when the abort callback stopped it


@contextlib.contextmanager
def _model_params(llama_cpp: Any, *, use_extra_bufts: bool) -> Iterator[None]:
    """Load with ``use_extra_bufts`` as given: the bindings' ``Llama`` has no argument for it, so
    its call to ``llama_model_default_params`` is answered with the field set (this process
    only, for the length of one load)."""
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = use_extra_bufts
        return value

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = original


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class LoadedModel:
    """A model and its context, plus what the chat loop needs precomputed."""

    def __init__(self, path: Path, options: LoadOptions):
        import llama_cpp

        self.lib = llama_cpp
        self.path = path
        self.options = options
        self.n_threads = options.n_threads or default_threads()
        self.cpu_kernels = load_cpu_backend(options.cpu_kernels).variant
        started = time.perf_counter()
        try:
            with _model_params(llama_cpp, use_extra_bufts=options.use_extra_bufts):
                self.llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=options.n_ctx,
                    n_batch=options.n_batch,
                    n_ubatch=options.n_batch,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    n_gpu_layers=options.n_gpu_layers,
                    use_mmap=options.use_mmap,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as error:
            raise ModelLoadFailed(
                f"llama.cpp could not load {path.name} ({error}). The file may be damaged, of an "
                "architecture this llama.cpp build does not know, or too large for the free memory."
            ) from error
        self.ctx = self.llm._ctx.ctx
        self.vocab = self.llm._model.vocab
        self.n_ctx = self.llm.n_ctx()
        self.n_batch = options.n_batch
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.piece_buffer = ctypes.create_string_buffer(256)
        self.control_tokens, special_strings = self._special_tokens()
        self.neutralise = SpecialTokenNeutraliser(special_strings)
        metadata = self.llm.metadata
        self.bos_text = self._token_text(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_text = self._token_text(llama_cpp.llama_vocab_eos(self.vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.template, self.renderer = choose_template(
            metadata.get("tokenizer.chat_template"), bos_token=self.bos_text, eos_token=self.eos_text
        )
        self.n_ctx_train = int(self.llm._model.n_ctx_train())
        self.name = metadata.get("general.name") or path.stem
        self.cached: list[int] = []  # tokens whose keys and values are in the KV cache
        self.adapter_handles: dict[str, Any] = {}  # loaded once per path, freed with the model
        self.active_adapters: tuple[tuple[str, float], ...] = ()
        self.load_s = time.perf_counter() - started

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self.lib.llama_vocab_get_text(self.vocab, token)).decode("utf-8", "replace")

    def _special_tokens(self) -> tuple[frozenset[int], list[str]]:
        lib = self.lib
        control_mask = lib.LLAMA_TOKEN_ATTR_CONTROL
        special_mask = control_mask | lib.LLAMA_TOKEN_ATTR_USER_DEFINED
        control: set[int] = set()
        strings: list[str] = []
        for token in range(lib.llama_vocab_n_tokens(self.vocab)):
            attr = lib.llama_vocab_get_attr(self.vocab, token)
            if attr & special_mask:
                if attr & control_mask:
                    control.add(token)
                text = self._token_text(token)
                # User-defined tokens are sometimes plain words; only markup-like ones are control.
                if not text.isalnum():
                    strings.append(text)
        return frozenset(control), strings

    def tokenize(self, text: str) -> list[int]:
        add_bos = self.add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def set_adapters(self, wanted: Sequence[tuple[str, float]]) -> float:
        """Answer with these (path, scale) LoRA adapters from now on; seconds it took (0 if
        unchanged). The base stays loaded; the KV cache is cleared, as it holds keys and values
        computed with the previous adapters."""
        wanted = tuple(wanted)
        if wanted == self.active_adapters:
            return 0.0
        started = time.perf_counter()
        lib = self.lib
        for path, _ in wanted:
            if path not in self.adapter_handles:
                handle = lib.llama_adapter_lora_init(self.llm._model.model, path.encode())
                if not handle:
                    raise ModelLoadFailed(
                        f"llama.cpp could not apply the adapter {Path(path).name} to {self.path.name}: "
                        "it is damaged or made for another base model. Remove it and import it again."
                    )
                self.adapter_handles[path] = handle
        n = len(wanted)
        handles = (lib.llama_adapter_lora_p_ctypes * n)(*(self.adapter_handles[p] for p, _ in wanted))
        scales = (ctypes.c_float * n)(*(scale for _, scale in wanted))
        lib.llama_set_adapters_lora(self.ctx, handles if n else None, n, scales if n else None)
        lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
        self.cached.clear()
        self.active_adapters = wanted
        return time.perf_counter() - started

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)) for t in texts]

    def close(self) -> None:
        if self.batch is not None:
            self.lib.llama_batch_free(self.batch)
            self.batch = None
        self.llm.close()

    # -- the hot path ------------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], pos0: int, cancelled: Callable[[], bool]) -> bool:
        """Decode ``tokens`` at positions from ``pos0``; False if cancelled.

        llama.cpp asks ``cancelled`` between the operations of each batch (its abort callback),
        so a Stop lands within milliseconds even in the middle of a long prefill.
        """
        lib = self.lib
        # ctypes calls back into Python per graph node: cheap next to a prefill batch, but not
        # free per generated token, so the callback is set for the prefill only.
        abort = lib.ggml_abort_callback(lambda _data: cancelled())
        lib.llama_set_abort_callback(self.ctx, abort, None)
        try:
            return self._decode_batches(tokens, pos0, cancelled)
        finally:
            lib.llama_set_abort_callback(self.ctx, lib.ggml_abort_callback(), None)

    def _decode_batches(self, tokens: Sequence[int], pos0: int, cancelled: Callable[[], bool]) -> bool:
        lib, batch = self.lib, self.batch
        for start in range(0, len(tokens), self.n_batch):
            if cancelled():
                return False
            chunk = tokens[start : start + self.n_batch]
            n = len(chunk)
            batch.n_tokens = n
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos0 + start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 0
            batch.logits[n - 1] = 1
            rc = lib.llama_decode(self.ctx, batch)
            if rc == ABORTED:
                # Drop whatever part of this batch reached the KV cache: ``cached`` must list
                # exactly the tokens the cache holds.
                lib.llama_memory_seq_rm(lib.llama_get_memory(self.ctx), -1, len(self.cached), -1)
                return False
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            self.cached.extend(chunk)
        return True

    def _sampler(self, s: Sampling) -> Any:
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if s.repeat_penalty != 1.0:
            lib.llama_sampler_chain_add(
                chain, lib.llama_sampler_init_penalties(
                    lib.llama_vocab_n_tokens(self.vocab), s.repeat_last_n, s.repeat_penalty, 0.0, 0.0
                )
            )
        if s.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(s.top_k))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(s.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(s.min_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(s.temperature))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(s.seed & 0xFFFFFFFF))
        return chain

    def chat(
        self,
        messages: list[dict[str, str]],
        sampling: Sampling,
        emit: Callable[[str, int], None],
        cancelled: Callable[[], bool],
    ) -> ChatStats:
        started = time.perf_counter()
        lib = self.lib
        max_tokens = max(1, min(sampling.max_tokens, self.n_ctx // 2))
        safe = neutralise_messages(messages, self.neutralise)
        fitted = fit_to_context(safe, self.renderer.render, self.tokenize, self.n_ctx - max_tokens)
        prompt = fitted.tokens

        # Reuse the KV cache for the longest shared prefix; at least one token must be decoded
        # to get logits for the first answer token.
        shared = 0
        limit = min(len(self.cached), len(prompt) - 1)
        while shared < limit and self.cached[shared] == prompt[shared]:
            shared += 1
        if shared < len(self.cached):
            mem = lib.llama_get_memory(self.ctx)
            if not lib.llama_memory_seq_rm(mem, -1, shared, -1):
                lib.llama_memory_clear(mem, True)
                shared = 0
            del self.cached[shared:]

        prefill_started = time.perf_counter()
        stats: dict[str, Any] = {
            "prompt_tokens": len(prompt),
            "cached_tokens": shared,
            "prefill_tokens": len(prompt) - shared,
            "dropped_messages": fitted.dropped_messages,
            "template_warning": self.template.warning,
        }
        if not self._decode(prompt[shared:], shared, cancelled):
            stats["prefill_s"] = time.perf_counter() - prefill_started
            stats["finish_reason"] = "cancelled"
            return ChatStats(**stats)
        stats["prefill_s"] = time.perf_counter() - prefill_started

        chain = self._sampler(sampling)
        # Hoisted for the loop: each attribute lookup is a dict probe per token.
        sample, decode, to_piece = lib.llama_sampler_sample, lib.llama_decode, lib.llama_token_to_piece
        is_eog, ctx, vocab, batch = lib.llama_vocab_is_eog, self.ctx, self.vocab, self.batch
        buf, control, cached = self.piece_buffer, self.control_tokens, self.cached
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        generated, finish = 0, "length"
        first_at = last_at = time.perf_counter()
        batch.n_tokens = 1
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = 1
        try:
            while True:
                token = sample(chain, ctx, -1)
                last_at = time.perf_counter()
                if generated == 0:
                    first_at = last_at
                if is_eog(vocab, token) or token in control:
                    finish = "stop"
                    break
                generated += 1
                n = to_piece(vocab, token, buf, 256, 0, False)
                text = utf8.decode(buf.raw[:n]) if n > 0 else ""
                if text:
                    emit(text, 1)
                if cancelled():
                    finish = "cancelled"
                    break
                if generated >= max_tokens:
                    break
                batch.token[0] = token
                batch.pos[0] = len(cached)
                rc = decode(ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc}")
                cached.append(token)
        finally:
            lib.llama_sampler_free(chain)
        tail = utf8.decode(b"", final=True)
        if tail:
            emit(tail, 0)
        stats.update(
            generated_tokens=generated,
            generation_s=last_at - first_at,
            time_to_first_token_s=first_at - started,
            finish_reason=finish,
        )
        return ChatStats(**stats)


def serve(conn: Connection, cancel_flag: Any) -> None:
    """The child's main loop. ``cancel_flag.value`` holds the id of the last cancelled request."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    model: LoadedModel | None = None
    while True:
        try:
            request: dict[str, Any] = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        op = request.get("op")
        request_id = int(request.get("id", 0))
        try:
            if op == "shutdown":
                break
            if op == "load":
                if model is not None:
                    model.close()
                    model = None
                model = LoadedModel(Path(request["path"]), LoadOptions(**request["options"]))
                # Said before the self-test, so the parent knows a death from here on is the
                # build or the CPU failing on a model that loaded, and tries safer settings.
                send(conn, {"type": "self-test", "cpu_kernels": model.cpu_kernels})
                self_test(model)
                send(conn,
                    {
                        "type": "loaded",
                        "cpu_kernels": model.cpu_kernels,
                        "name": model.name,
                        "n_ctx": model.n_ctx,
                        "n_ctx_train": model.n_ctx_train,
                        "n_threads": model.n_threads,
                        "template_source": model.template.source,
                        "template_warning": model.template.warning,
                        "special_tokens": len(model.neutralise.strings),
                        "load_s": model.load_s,
                    }
                )
            elif op == "chat":
                if model is None:
                    raise ModelLoadFailed("No model is loaded: load a model first.")

                emit = DeltaBatcher(conn)

                def cancelled(request_id: int = request_id) -> bool:
                    # A parent killed mid-answer cannot say stop: being orphaned (re-parented)
                    # stops the work at the next token or prefill batch, and the child exits
                    # when it next writes to the closed pipe.
                    return bool(cancel_flag.value >= request_id) or os.getppid() != parent

                switch_s = model.set_adapters(
                    [(str(a["path"]), float(a["scale"])) for a in request.get("adapters", [])]
                )
                stats = model.chat(
                    plain_messages(request["messages"]),
                    Sampling(**request["sampling"]),
                    emit,
                    cancelled,
                )
                stats = replace(stats, adapter_switch_s=switch_s)
                emit.flush()
                send(conn, {"type": "done", "stats": asdict(stats)})
            elif op == "count":
                if model is None:
                    raise ModelLoadFailed("No model is loaded: load a model first.")
                send(conn, {"type": "counts", "counts": model.count_tokens(request["texts"])})
            elif op == "render":
                if model is None:
                    raise ModelLoadFailed("No model is loaded: load a model first.")
                safe = neutralise_messages(plain_messages(request["messages"]), model.neutralise)
                text = model.renderer.render(safe)
                send(conn, {"type": "rendered", "text": text, "tokens": len(model.tokenize(text))})
            elif op == "unload":
                if model is not None:
                    model.close()
                    model = None
                send(conn, {"type": "unloaded"})
            else:
                raise ValueError(f"unknown engine request {op!r}")
        except Exception as error:  # reported to the parent, which raises a typed error
            send(conn,
                {
                    "type": "error",
                    "kind": type(error).__name__,
                    "message": str(error),
                    "traceback": traceback.format_exc(),
                }
            )
    if model is not None:
        model.close()

