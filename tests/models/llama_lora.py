"""llama.cpp in process with LoRA adapters attached through the low-level API (test helper)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np


class LlamaCppLora:
    """The base GGUF in llama.cpp, in process, with adapters attached by the low-level API."""

    def __init__(self, model_path: Path) -> None:
        from llama_cpp import Llama

        from bastion.models.llama_backends import load_cpu_backend

        load_cpu_backend()  # the portable build registers its CPU kernels on request
        self.llm = Llama(model_path=str(model_path), n_ctx=512, n_batch=512, n_threads=2,
                         logits_all=True, verbose=False)
        self.adapters: list[object] = []

    def load(self, path: Path) -> object:
        import llama_cpp

        adapter = llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
        assert adapter, f"llama.cpp refused the adapter {path.name}"
        self.adapters.append(adapter)
        return adapter

    def logits(self, ids: list[int], adapter: object | None = None, scale: float = 1.0) -> np.ndarray:
        import llama_cpp

        ctx = self.llm._ctx.ctx
        if adapter is None:
            assert llama_cpp.llama_set_adapters_lora(ctx, None, 0, None) == 0
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(scale)
            assert llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales) == 0
        self.llm.reset()  # a new adapter set makes the KV cache stale
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def close(self) -> None:
        import llama_cpp

        for adapter in self.adapters:
            llama_cpp.llama_adapter_lora_free(adapter)
        self.llm.close()
