"""The engine: a llama.cpp model in a spawned child process, driven from this process.

If the child dies (abort, segfault, out of memory) the caller gets ``EngineCrashed`` naming the
model, and this process carries on; the next ``load`` starts a fresh child. A new model is loaded
in a new child and swapped in only once it has loaded, so a model that fails to load leaves the
previous one usable.

``Engine`` is safe to use from one worker thread at a time, with ``cancel()`` callable from any
thread (the GUI's Stop button).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from . import engine_worker
from .catalog import model_name
from .chat_template import TemplateError
from .engine_fallback import FallbackMemory, describe, safer_rungs
from .engine_types import (
    AdapterUse,
    ChatDelta,
    ChatDone,
    ChatEvent,
    ChatStats,
    LoadInfo,
    LoadOptions,
    Sampling,
)
from .errors import (
    EngineCrashed,
    EngineNotLoaded,
    ModelError,
    ModelLoadFailed,
    PromptTooLong,
)
from .gguf_file import GGUFInfo, read_gguf_info

POLL_S = 0.05
LOAD_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 120.0
UNLOAD_WAIT_S = 5.0  # for a request in flight to finish before the engine is stopped anyway  # a count or render; chats stream as long as tokens keep coming
# Longer than any honest message (a rendered prompt of a huge context); bounds what a child can make
# the parent hold.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

_ERRORS: dict[str, type[ModelError]] = {
    "ModelLoadFailed": ModelLoadFailed,
    "PromptTooLong": PromptTooLong,
    "TemplateError": TemplateError,
    "EngineNotLoaded": EngineNotLoaded,
}


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hints = {"SIGKILL": " (killed, often for lack of memory)", "SIGSEGV": " (a crash)",
                 "SIGABRT": " (llama.cpp aborted)", "SIGBUS": " (the model file changed on disk)"}
        return f"it was stopped by {name}{hints.get(name, '')}"
    return f"it exited with code {exitcode}"


def _decode(raw: bytes) -> dict[str, Any] | None:
    """A child's message: JSON, never unpickled, so a subverted engine cannot run code here."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class _Child:
    """One engine process and its pipe."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.cancel_flag: Any = ctx.RawValue("q", 0)
        self.process: BaseProcess = ctx.Process(
            target=engine_worker.serve,
            args=(child_conn, self.cancel_flag),
            name="bastion-engine",
            daemon=True,
        )
        self.process.start()
        child_conn.close()

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send(message)

    def receive(self, timeout_s: float | None) -> dict[str, Any] | None:
        """The next message, or None if the child died, stayed silent past the timeout or sent
        something that is not a JSON object (callers then treat it as crashed and stop it)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        conn: Connection = self.conn
        while True:
            try:
                if conn.poll(POLL_S):
                    return _decode(conn.recv_bytes(MAX_MESSAGE_BYTES))
            except (EOFError, OSError):
                return None
            if not self.process.is_alive():
                # The child may have written its last message just before dying.
                try:
                    if conn.poll(0):
                        return _decode(conn.recv_bytes(MAX_MESSAGE_BYTES))
                except (EOFError, OSError):
                    pass
                return None
            if deadline is not None and time.monotonic() > deadline:
                return None

    def stop(self, grace_s: float = 3.0) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.conn.send({"op": "shutdown"})
            self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(grace_s)
        self.conn.close()


class _SelfTestFailure(Exception):
    """The model loaded, then the engine died or gave garbage at its self-test."""

    def __init__(self, reason: str, exitcode: int | None, cpu_kernels: str | None):
        super().__init__(reason)
        self.reason = reason
        self.exitcode = exitcode
        self.cpu_kernels = cpu_kernels


class Engine:
    """Loads one model at a time and streams chats from it.

    Args:
        memory: where safer settings found by the self-test are remembered (per model file,
            llama.cpp build and CPU); None = found again at every load.
    """

    def __init__(self, memory: FallbackMemory | None = None) -> None:
        self._memory = memory
        self._child: _Child | None = None
        self._info: LoadInfo | None = None
        self._gguf: GGUFInfo | None = None
        self._ids = itertools.count(1)
        self._current_id = 0
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def info(self) -> LoadInfo | None:
        """What is loaded, or None."""
        return self._info

    @property
    def gguf_info(self) -> GGUFInfo | None:
        """The loaded model's validated header (adapters are checked against it), or None."""
        return self._gguf if self._info is not None else None

    def load(self, path: Path, options: LoadOptions | None = None) -> LoadInfo:
        """Validate ``path`` and load it in a fresh engine process that proves itself first.

        The engine generates a few tokens at load (a self-test). If its process dies there, or
        the logits are garbage, the model is loaded again with safer settings (see
        ``engine_fallback``); the setting that worked is remembered for this model, build and
        CPU, and named in ``LoadInfo.fallback``.

        Raises:
            InvalidModelFile: the file is not a GGUF llama.cpp can safely open.
            ModelLoadFailed: llama.cpp refused it; the previously loaded model stays loaded.
            EngineCrashed: the new process died while loading, or failed its self-test with
                every safer setting; the previous model stays loaded.
        """
        options = options or LoadOptions()
        path = Path(path).resolve()
        gguf = read_gguf_info(path)  # never hand llama.cpp a file that fails validation
        if gguf.is_embedding_model:
            raise ModelLoadFailed(
                f"{path.name} is an embedding model, not a chat model. Choose a chat (instruct) "
                "model; embedding models are chosen per document collection."
            )
        rungs = safer_rungs(options)
        key = FallbackMemory.key(path, options) if self._memory else ""
        remembered = self._memory.recall(key) if self._memory else None
        names = [rung.name for rung in rungs]
        start = names.index(remembered[0]) if remembered and remembered[0] in names else 0
        first_failure: _SelfTestFailure | None = None
        with self._lock:
            for rung in rungs[start:]:
                try:
                    child, reply = self._start(path, rung.options)
                    break
                except _SelfTestFailure as failure:
                    first_failure = first_failure or failure
            else:
                assert first_failure is not None
                raise EngineCrashed(
                    f"The engine could not run {path.name} on this computer: its self-test "
                    f"failed with every safer setting ({first_failure.reason}). Try another "
                    "model, or report this llama.cpp build and CPU (`bastion doctor`).",
                    model=path.name,
                    exitcode=first_failure.exitcode,
                )
            fallback, is_new = None, False
            if first_failure is not None:
                fallback = describe(rung, first_failure.cpu_kernels, first_failure.reason)
                is_new = True
                if self._memory:
                    self._memory.remember(key, rung.name, fallback, path.name)
            elif start > 0 and remembered:
                fallback = remembered[1]
            old, self._child, self._gguf = self._child, child, gguf
            self._info = LoadInfo(
                path=path,
                name=model_name(path),  # the catalog's name, not general.name
                n_ctx=int(reply["n_ctx"]),
                n_ctx_train=int(reply["n_ctx_train"]),
                n_threads=int(reply["n_threads"]),
                template_source=str(reply["template_source"]),
                template_warning=reply["template_warning"],
                special_tokens=int(reply["special_tokens"]),
                load_s=float(reply["load_s"]),
                cpu_kernels=str(reply["cpu_kernels"]),
                fallback=fallback,
                fallback_is_new=is_new,
            )
        if old is not None:
            old.stop()
        return self._info

    def _start(self, path: Path, options: LoadOptions) -> tuple[_Child, dict[str, Any]]:
        """A new child with ``path`` loaded and self-tested, and its 'loaded' reply.

        Raises ``_SelfTestFailure`` if the model loaded but the self-test failed; the errors
        of ``load`` otherwise.
        """
        child = _Child()
        child.send({"op": "load", "id": 0, "path": str(path), "options": options.__dict__})
        reply = child.receive(LOAD_TIMEOUT_S)
        cpu_kernels: str | None = None
        if reply is not None and reply.get("type") == "self-test":
            cpu_kernels = str(reply.get("cpu_kernels"))
            reply = child.receive(LOAD_TIMEOUT_S)
            if reply is None or reply.get("kind") == "SelfTestFailed":
                child.process.join(2.0)  # the pipe closes before the exit status is known
                exitcode = child.process.exitcode
                child.stop()
                reason = _describe_exit(exitcode) if reply is None else str(reply.get("message"))
                raise _SelfTestFailure(reason, exitcode, cpu_kernels)
        if reply is None or reply.get("type") != "loaded":
            if reply is None:
                child.process.join(2.0)
            exitcode = child.process.exitcode
            child.stop()
            if reply is None:
                raise EngineCrashed(
                    f"The engine stopped while loading {path.name}: {_describe_exit(exitcode)}. "
                    "The file may be damaged or need more memory than is free.",
                    model=path.name,
                    exitcode=exitcode,
                )
            raise self._error(reply)
        return child, reply

    def unload(self) -> None:
        """Stop the engine process. An answer still streaming (its iterator not closed, e.g. the
        caller failed mid-answer) is cancelled rather than waited for."""
        self.cancel()
        locked = self._lock.acquire(timeout=UNLOAD_WAIT_S)
        try:
            child, self._child, self._info = self._child, None, None
        finally:
            if locked:
                self._lock.release()
        if child is not None:
            child.stop()

    close = unload

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The engine process's id (tests kill it to prove crash recovery)."""
        return self._child.process.pid if self._child is not None else None

    # -- requests ----------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        sampling: Sampling | None = None,
        adapters: Sequence[AdapterUse] = (),
    ) -> Iterator[ChatEvent]:
        """Stream the answer to ``messages`` as ``ChatDelta`` events, then one ``ChatDone``.

        The model's own chat template is used; special-token strings in the messages are
        neutralised; the oldest turns are dropped to fit the context (counted in the stats).
        ``adapters`` are the LoRA adapters (with scales) to answer with; changing them from one
        answer to the next does not reload the model, only its KV cache is reset. Closing the
        iterator early cancels the answer.
        """
        sampling = sampling or Sampling()
        with self._lock:
            child = self._require_child()
            request_id = next(self._ids)
            self._current_id = request_id
            started = time.perf_counter()
            child.send({"op": "chat", "id": request_id, "messages": list(messages),
                        "sampling": sampling.to_dict(),
                        "adapters": [adapter.to_dict() for adapter in adapters]})
            finished = False
            first_token_s: float | None = None
            try:
                while True:
                    reply = child.receive(None)
                    if reply is None:
                        raise self._crashed(child, "while answering")
                    kind = reply.get("type")
                    if kind == "delta":
                        if first_token_s is None:
                            first_token_s = time.perf_counter() - started
                        yield ChatDelta(str(reply["text"]), int(reply["tokens"]))
                    elif kind == "done":
                        finished = True
                        fields = dict(reply["stats"])
                        # The caller's clock: includes the trip through the pipe.
                        if first_token_s is not None:
                            fields["time_to_first_token_s"] = first_token_s
                        yield ChatDone(ChatStats(**fields))
                        return
                    else:
                        finished = True
                        raise self._error(reply)
            finally:
                if not finished and child.process.is_alive():
                    # Abandoned mid-stream: stop the child and drain the pipe to the 'done'.
                    child.cancel_flag.value = request_id
                    while (reply := child.receive(REQUEST_TIMEOUT_S)) is not None:
                        if reply.get("type") in ("done", "error"):
                            break

    def cancel(self) -> None:
        """Stop the answer being generated; safe from any thread, a no-op when idle."""
        child = self._child
        if child is not None:
            child.cancel_flag.value = self._current_id

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of plain texts (no special tokens, no BOS) with the loaded tokenizer."""
        reply = self._request({"op": "count", "texts": list(texts)})
        return [int(n) for n in reply["counts"]]

    def render(self, messages: Sequence[dict[str, str]]) -> tuple[str, int]:
        """The prompt text the template makes of ``messages``, and its token count."""
        reply = self._request({"op": "render", "messages": list(messages)})
        return str(reply["text"]), int(reply["tokens"])

    # -- internals ---------------------------------------------------------------------------

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            child = self._require_child()
            child.send({**message, "id": 0})
            reply = child.receive(REQUEST_TIMEOUT_S)
            if reply is None:
                raise self._crashed(child, "while counting tokens")
            if reply.get("type") == "error":
                raise self._error(reply)
            return reply

    def _require_child(self) -> _Child:
        if self._child is None or self._info is None:
            raise EngineNotLoaded("No model is loaded. Load a model first.")
        return self._child

    def _crashed(self, child: _Child, when: str) -> EngineCrashed:
        child.process.join(1.0)
        exitcode = child.process.exitcode
        name = self._info.path.name if self._info else "the model"
        self._child, self._info = None, None
        child.stop()
        return EngineCrashed(
            f"The engine running {name} stopped {when}: {_describe_exit(exitcode)}. "
            "Nothing you saved is lost; load the model again to continue.",
            model=name,
            exitcode=exitcode,
        )

    @staticmethod
    def _error(reply: dict[str, Any]) -> ModelError:
        cls = _ERRORS.get(str(reply.get("kind")), ModelError)
        message = str(reply.get("message") or "the engine reported an unknown error")
        if cls is ModelError:
            message = f"The engine failed: {message}"
        return cls(message)
