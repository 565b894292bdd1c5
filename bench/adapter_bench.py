"""LoRA adapters on the engine: how long a switch takes, and what an adapter costs per token.

    .venv/bin/python bench/adapter_bench.py [--model PATH] [--threads 2] [--tokens 128] [--runs 3]
                                            [--rank 8]

Two random adapters shaped for SmolLM2-135M (rank ``--rank`` on all seven projections of every
layer, f16: about 5 MB each at rank 8) are written with Bastion's GGUF writer. Switch times are
the engine's own (``ChatStats.adapter_switch_s``: loading the file the first time, then
``llama_set_adapters_lora`` and the KV-cache reset). Targets: a switch ≤ 50 ms; generation with
an adapter ≥ 0.9× without. Prints Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

import bastion.desktop  # noqa: F401 - offline environment
from bastion.models.catalog import embedded_default_model_path
from bastion.models.engine import Engine
from bastion.models.engine_types import AdapterUse, ChatDone, LoadOptions, Sampling
from bastion.models.lora_gguf import LoraBase, write_lora_gguf

SMOLLM2 = LoraBase(architecture="llama", n_head=9, n_head_kv=3, name="SmolLM2 135M Instruct")
SHAPES = {"q_proj": (576, 576), "k_proj": (192, 576), "v_proj": (192, 576), "o_proj": (576, 576),
          "gate_proj": (1536, 576), "up_proj": (1536, 576), "down_proj": (576, 1536)}
PARENT = {m: ("mlp" if m.endswith(("gate_proj", "up_proj", "down_proj")) else "self_attn") for m in SHAPES}
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def write_adapter(path: Path, rank: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    state = {}
    for layer in range(30):
        for module, (out_f, in_f) in SHAPES.items():
            key = f"base_model.model.model.layers.{layer}.{PARENT[module]}.{module}"
            state[f"{key}.lora_A.weight"] = rng.normal(0, in_f ** -0.5, (rank, in_f)).astype(np.float32)
            state[f"{key}.lora_B.weight"] = rng.normal(0, 0.01, (out_f, rank)).astype(np.float32)
    write_lora_gguf(path, state, SMOLLM2, alpha=float(rank), name=path.stem, tensor_type="f16")
    return path


def answer(engine: Engine, sampling: Sampling, adapters: tuple[AdapterUse, ...], run: int) -> ChatDone:
    messages = [{"role": "system", "content": f"Run {run}."}, *PROMPT]
    done = [e for e in engine.chat(messages, sampling, adapters) if isinstance(e, ChatDone)]
    return done[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    model = args.model or embedded_default_model_path()
    sampling = Sampling(max_tokens=args.tokens, temperature=0.0, repeat_penalty=1.0)
    short = Sampling(max_tokens=1, temperature=0.0, repeat_penalty=1.0)
    with tempfile.TemporaryDirectory() as tmp, Engine() as engine:
        a = AdapterUse(str(write_adapter(Path(tmp) / "a.gguf", args.rank, 1)), 1.0)
        b = AdapterUse(str(write_adapter(Path(tmp) / "b.gguf", args.rank, 2)), 1.0)
        size_mb = Path(a.path).stat().st_size / 1e6
        info = engine.load(model, LoadOptions(n_ctx=2048, n_threads=args.threads))
        first_a = answer(engine, short, (a,), 0).stats.adapter_switch_s
        first_b = answer(engine, short, (b,), 0).stats.adapter_switch_s
        switches = {"A → B": [], "B → A": [], "A → none": [], "none → A": [], "A → A at 0.5": []}
        for run in range(args.runs + 2):
            switches["A → B"].append(answer(engine, short, (b,), run).stats.adapter_switch_s)
            switches["B → A"].append(answer(engine, short, (a,), run).stats.adapter_switch_s)
            switches["A → none"].append(answer(engine, short, (), run).stats.adapter_switch_s)
            switches["none → A"].append(answer(engine, short, (a,), run).stats.adapter_switch_s)
            switches["A → A at 0.5"].append(
                answer(engine, short, (AdapterUse(a.path, 0.5),), run).stats.adapter_switch_s)
            answer(engine, short, (a,), run)
        speed: dict[str, list[float]] = {"no adapter": [], "one adapter": [], "two adapters": []}
        for run in range(args.runs + 1):  # the first of each warms up
            for label, uses in (("no adapter", ()), ("one adapter", (a,)), ("two adapters", (a, b))):
                answer(engine, short, uses, 1000 + run)  # switch outside the timed answer
                speed[label].append(answer(engine, sampling, uses, 2000 + run).stats.generation_tps)

    print(f"Model {model.name}, CPU kernels {info.cpu_kernels}, {args.threads} threads; adapters "
          f"rank {args.rank} on all 7 projections × 30 layers, f16, {size_mb:.1f} MB each.\n")
    print("| switch | median | max |")
    print("|---|---:|---:|")
    print(f"| first attach of A (reads the file) | {first_a * 1000:.1f} ms | |")
    print(f"| first attach of B (reads the file) | {first_b * 1000:.1f} ms | |")
    for label, values in switches.items():
        print(f"| {label} | {statistics.median(values) * 1000:.1f} ms | {max(values) * 1000:.1f} ms |")
    base = statistics.median(speed["no adapter"][1:])
    print(f"\n{args.tokens} tokens, greedy, median of {args.runs} runs after a warm-up:\n")
    print("| adapters | generation tokens/s | vs none |")
    print("|---|---:|---:|")
    for label, values in speed.items():
        tps = statistics.median(values[1:])
        print(f"| {label} | {tps:.1f} | {tps / base:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
