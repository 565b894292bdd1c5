"""Errors from the model layer. Every message says what happened and what to do."""

from __future__ import annotations


class ModelError(Exception):
    """Base of all model-layer errors; ``str(error)`` is a message a user can act on."""


class InvalidModelFile(ModelError):
    """The file is not a GGUF model llama.cpp can safely open."""


class ModelNotFound(ModelError):
    """No model by that name or path."""


class ModelLoadFailed(ModelError):
    """llama.cpp refused to load the model."""


class EngineCrashed(ModelError):
    """The engine process died (abort, segfault, out of memory); start a fresh engine."""

    def __init__(self, message: str, model: str | None = None, exitcode: int | None = None):
        super().__init__(message)
        self.model = model
        self.exitcode = exitcode


class EngineNotLoaded(ModelError):
    """A request needs a loaded model and none is loaded."""


class PromptTooLong(ModelError):
    """The newest message alone does not fit in the context window."""


class SelfTestFailed(ModelError):
    """The loaded model produced garbage (non-finite or flat logits) at the engine's self-test."""
