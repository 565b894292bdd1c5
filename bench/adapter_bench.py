"""LoRA adapters on the engine: how long a switch takes, and what an adapter costs per token.

    .venv/bin/python bench/adapter_bench.py [--threads 1] [--tokens 64] [--runs 5] [--rank 8]
        [--shapes smollm2-135m smollm2-360m smollm2-1.7b] [--layouts all-f16 attention-f16 …]
        [--work DIR]

1. Switches, through Bastion's engine on the embedded model: two random rank-``--rank`` adapters
   on all seven projections of every layer (f16, about 5 MB each at rank 8) written with Bastion's
   GGUF writer; ``ChatStats.adapter_switch_s`` is the engine's own time (reading the file the
   first time, then ``llama_set_adapters_lora`` and the KV-cache reset). Target ≤ 50 ms.
2. Cost per generated token, by model shape and adapter layout (target: ≥ 0.9× the speed
   without). llama.cpp adds four graph operations per adapted projection (two small products, a
   scale, an add), so the cost depends on how many projections are adapted and how much work the
   base does per token — on a 135M model the fixed cost of those small operations is a large
   share of a token. ``smollm2-135m`` is the embedded model; the bigger shapes are random-weight
   models of SmolLM2-360M's and SmolLM2-1.7B's published shapes (``bench/synthetic_llama.py``,
   made once into ``--work``, quantized Q4_1 like the embedded model), as nothing can be
   downloaded here. Each row decodes ``--tokens`` tokens after the same prompt, with and without
   the adapter alternately; the CPU time of the decoding thread (``--threads 1``) is the measure
   that a shared machine disturbs least, and the wall time is printed beside it.

Prints Markdown.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from synthetic_llama import SHAPES, Shape, synthetic_model

import bastion.desktop  # noqa: F401 - offline environment
from bastion.models.catalog import embedded_default_model_path
from bastion.models.engine import Engine
from bastion.models.engine_types import AdapterUse, ChatDone, LoadOptions, Sampling
from bastion.models.lora_gguf import LoraBase, write_lora_gguf

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
TARGETS = {"all": ATTENTION + MLP, "attention": ATTENTION, "mlp": MLP, "qv": ("q_proj", "v_proj")}
LAYOUTS = ("all-f32", "all-f16", "attention-f32", "attention-f16", "mlp-f32", "qv-f32")


def write_adapter(path: Path, shape: Shape, rank: int, seed: int, targets: Sequence[str] = TARGETS["all"],
                  tensor_type: str = "f16") -> Path:
    rng = np.random.default_rng(seed)
    state = {}
    for layer in range(shape.n_layer):
        for module in targets:
            out_f, in_f = shape.module_shapes()[module]
            parent = "mlp" if module in MLP else "self_attn"
            key = f"base_model.model.model.layers.{layer}.{parent}.{module}"
            state[f"{key}.lora_A.weight"] = rng.normal(0, in_f ** -0.5, (rank, in_f)).astype(np.float32)
            state[f"{key}.lora_B.weight"] = rng.normal(0, 0.01, (out_f, rank)).astype(np.float32)
    base = LoraBase(architecture="llama", n_head=shape.n_head, n_head_kv=shape.n_head_kv, name=path.stem)
    write_lora_gguf(path, state, base, alpha=float(rank), name=path.stem, tensor_type=tensor_type)
    return path


def answer(engine: Engine, sampling: Sampling, adapters: tuple[AdapterUse, ...], run: int) -> ChatDone:
    messages = [{"role": "system", "content": f"Run {run}."}, *PROMPT]
    done = [e for e in engine.chat(messages, sampling, adapters) if isinstance(e, ChatDone)]
    return done[-1]


def switch_table(model: Path, threads: int, rank: int, runs: int) -> None:
    short = Sampling(max_tokens=1, temperature=0.0, repeat_penalty=1.0)
    with tempfile.TemporaryDirectory() as tmp, Engine() as engine:
        shape = SHAPES["smollm2-135m"]
        a = AdapterUse(str(write_adapter(Path(tmp) / "a.gguf", shape, rank, 1)), 1.0)
        b = AdapterUse(str(write_adapter(Path(tmp) / "b.gguf", shape, rank, 2)), 1.0)
        size_mb = Path(a.path).stat().st_size / 1e6
        info = engine.load(model, LoadOptions(n_ctx=2048, n_threads=threads))
        first_a = answer(engine, short, (a,), 0).stats.adapter_switch_s
        first_b = answer(engine, short, (b,), 0).stats.adapter_switch_s
        switches: dict[str, list[float]] = {
            "A → B": [], "B → A": [], "A → none": [], "none → A": [], "A → A at 0.5": [], "none → A + B": []}
        for run in range(runs + 2):
            switches["A → B"].append(answer(engine, short, (b,), run).stats.adapter_switch_s)
            switches["B → A"].append(answer(engine, short, (a,), run).stats.adapter_switch_s)
            switches["A → none"].append(answer(engine, short, (), run).stats.adapter_switch_s)
            switches["none → A"].append(answer(engine, short, (a,), run).stats.adapter_switch_s)
            switches["A → A at 0.5"].append(
                answer(engine, short, (AdapterUse(a.path, 0.5),), run).stats.adapter_switch_s)
            answer(engine, short, (), run)
            switches["none → A + B"].append(answer(engine, short, (a, b), run).stats.adapter_switch_s)
    print(f"Switches: {model.name}, CPU kernels {info.cpu_kernels}, {threads} thread(s); adapters rank "
          f"{rank} on all 7 projections × 30 layers, f16, {size_mb:.1f} MB each (target ≤ 50 ms).\n")
    print("| switch | median | max |")
    print("|---|---:|---:|")
    print(f"| first attach of A (reads the file) | {first_a * 1000:.1f} ms | |")
    print(f"| first attach of B (reads the file) | {first_b * 1000:.1f} ms | |")
    for label, values in switches.items():
        print(f"| {label} | {statistics.median(values) * 1000:.1f} ms | {max(values) * 1000:.1f} ms |")


def decode_cost(model: Path, adapters: dict[str, Path], threads: int, tokens: int, runs: int
                ) -> dict[str, tuple[float, float]]:
    """CPU and wall milliseconds per decoded token: without an adapter ("none"), and with each."""
    import llama_cpp
    from llama_cpp import llama_cpp as lib

    from bastion.models.llama_backends import load_cpu_backend

    load_cpu_backend()
    llm = llama_cpp.Llama(str(model), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    handles = {label: lib.llama_adapter_lora_init(llm._model.model, str(path).encode())
               for label, path in adapters.items()}
    prompt = llm.tokenize(b"Write a long story about a lighthouse keeper.")

    def run(label: str) -> tuple[float, float]:
        if label == "none":
            lib.llama_set_adapters_lora(llm._ctx.ctx, None, 0, None)
        else:
            chosen = (lib.llama_adapter_lora_p_ctypes * 1)(handles[label])
            lib.llama_set_adapters_lora(llm._ctx.ctx, chosen, 1, (ctypes.c_float * 1)(1.0))
        llm.reset()
        lib.llama_memory_clear(lib.llama_get_memory(llm._ctx.ctx), True)
        llm.eval(prompt)
        token = prompt[-1]
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(tokens):
            llm.eval([token])
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        return (time.thread_time() - cpu) * 1000 / tokens, (time.perf_counter() - wall) * 1000 / tokens

    labels = ["none", *adapters]
    measured: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}
    for _ in range(runs + 1):  # the first round warms up
        for label in labels:
            measured[label].append(run(label))
    llm.close()
    return {label: (statistics.median(c for c, _ in values[1:]), statistics.median(w for _, w in values[1:]))
            for label, values in measured.items()}


def cost_table(shapes: Sequence[str], layouts: Sequence[str], work: Path, threads: int, tokens: int,
               runs: int, rank: int) -> None:
    print(f"\nCost per token: {tokens} tokens decoded greedily, {threads} thread(s), median of {runs} "
          f"rounds after a warm-up, with and without each adapter alternately (target ≥ 0.9×).\n")
    print("| model shape | adapter (rank " f"{rank}) | size | CPU ms/token | speed vs none | wall ms/token |")
    print("|---|---|---:|---:|---:|---:|")
    for name in shapes:
        model = (embedded_default_model_path() if name == "smollm2-135m"
                 else synthetic_model(name, work / f"{name}.Q4_1.gguf"))
        with tempfile.TemporaryDirectory() as tmp:
            adapters = {}
            for layout in layouts:
                targets, tensor_type = layout.rsplit("-", 1)
                adapters[layout] = write_adapter(Path(tmp) / f"{layout}.gguf", SHAPES[name], rank, 1,
                                                 TARGETS[targets], tensor_type)
            cost = decode_cost(model, adapters, threads, tokens, runs)
            base_cpu, base_wall = cost["none"]
            print(f"| {name} | none | | {base_cpu:.2f} | 1.00× | {base_wall:.2f} |")
            for layout, path in adapters.items():
                cpu, wall = cost[layout]
                print(f"| {name} | {layout} | {path.stat().st_size / 1e6:.1f} MB | {cpu:.2f} | "
                      f"**{base_cpu / cpu:.2f}×** | {wall:.2f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model for the switch table (default: embedded)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["smollm2-135m"])
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bastion-adapter-bench",
                        help="where the random-weight models of the bigger shapes are kept")
    parser.add_argument("--skip-switches", action="store_true")
    args = parser.parse_args()
    if not args.skip_switches:
        switch_table(args.model or embedded_default_model_path(), args.threads, args.rank, args.runs)
    cost_table(args.shapes, args.layouts, args.work, args.threads, args.tokens, args.runs, args.rank)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
