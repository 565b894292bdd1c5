"""Engine speed: Bastion's engine vs llama-cpp-python in one process vs llama.cpp's llama-bench.

    .venv/bin/python bench/engine_bench.py [--model PATH] [--threads 2] [--tokens 256] [--runs 3]
                                           [--llama-bench PATH | --build-llama-bench]

Same model, threads, prompt and greedy sampling for the first two. llama-bench is built from the
llama.cpp sources vendored in the llama-cpp-python sdist (``--build-llama-bench`` fetches the sdist
from the package index with pip and builds only that target into bench/out/). Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import time
from importlib.metadata import version
from pathlib import Path

import bastion.desktop  # noqa: F401 - offline environment
from bastion.models.catalog import embedded_default_model_path
from bastion.models.engine import Engine
from bastion.models.engine_types import ChatDelta, ChatDone, LoadOptions, Sampling

OUT = Path(__file__).resolve().parent / "out"
PROMPT = [{"role": "user", "content": "Write a long, detailed story about a lighthouse keeper "
                                      "who finds a message in a bottle."}]


def bench_engine(model: Path, threads: int, tokens: int, runs: int) -> dict[str, float]:
    sampling = Sampling(max_tokens=tokens, temperature=0.0, repeat_penalty=1.0)
    gen, ttft, prefill, n_gen = [], [], [], []
    with Engine() as engine:
        engine.load(model, LoadOptions(n_ctx=2048, n_threads=threads))
        for _ in range(runs + 1):  # the first run warms up
            done = None
            # A different first word per run defeats KV reuse, so each run prefills in full.
            for event in engine.chat([{"role": "system", "content": f"Run {len(gen)}."}, *PROMPT], sampling):
                if isinstance(event, ChatDone):
                    done = event
            assert done is not None
            gen.append(done.stats.generation_tps)
            ttft.append(done.stats.time_to_first_token_s)
            prefill.append(done.stats.prefill_tps)
            n_gen.append(done.stats.generated_tokens)
    return {"gen_tps": statistics.median(gen[1:]), "ttft_s": statistics.median(ttft[1:]),
            "prefill_tps": statistics.median(prefill[1:]), "tokens": statistics.median(n_gen[1:])}


def bench_direct(model: Path, threads: int, tokens: int, runs: int) -> dict[str, float]:
    from llama_cpp import Llama

    from bastion.models.llama_backends import load_cpu_backend

    load_cpu_backend()  # the portable build registers its CPU kernels on request

    llm = Llama(model_path=str(model), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False)
    gen, ttft, n_gen = [], [], []
    for run in range(runs + 1):
        messages = [{"role": "system", "content": f"Run {run}."}, *PROMPT]
        llm.reset()
        started = time.perf_counter()
        first = last = None
        count = 0
        for chunk in llm.create_chat_completion(messages, max_tokens=tokens, temperature=0.0,
                                                repeat_penalty=1.0, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                count += 1
        assert first is not None and last is not None
        gen.append((count - 1) / (last - first))
        ttft.append(first - started)
        n_gen.append(count)
    llm.close()
    return {"gen_tps": statistics.median(gen[1:]), "ttft_s": statistics.median(ttft[1:]),
            "tokens": statistics.median(n_gen[1:])}


def bench_follow_up(model: Path, threads: int) -> dict[str, float]:
    """A follow-up turn's time to first token vs prefilling only its new tokens from scratch."""
    sampling = Sampling(max_tokens=64, temperature=0.0, repeat_penalty=1.0)

    def run(engine: Engine, messages: list[dict[str, str]]) -> tuple[str, ChatDone]:
        text, done = "", None
        for event in engine.chat(messages, sampling):
            if isinstance(event, ChatDelta):
                text += event.text
            else:
                done = event
        assert done is not None
        return text, done

    results: list[tuple[float, float, int]] = []
    with Engine() as engine:
        engine.load(model, LoadOptions(n_ctx=2048, n_threads=threads))
        for i in range(4):
            history = [{"role": "system", "content": f"Session {i}. You are helpful."},
                       {"role": "user", "content": "Tell me about the history of lighthouses."}]
            answer, _ = run(engine, history)
            follow = "And how do modern lighthouses work, compared with the old ones?"
            history += [{"role": "assistant", "content": answer}, {"role": "user", "content": follow}]
            _, second = run(engine, history)
            new_tokens = second.stats.prefill_tokens
            # The same number of new tokens, prefilled cold: a fresh one-message prompt.
            filler = " ".join(["word"] * max(1, new_tokens - 12))
            _, cold = run(engine, [{"role": "user", "content": f"{i} {filler}"}])
            results.append((second.stats.time_to_first_token_s, cold.stats.time_to_first_token_s,
                            new_tokens))
    follow_ttft = statistics.median(r[0] for r in results[1:])
    cold_ttft = statistics.median(r[1] for r in results[1:])
    return {"follow_ttft_s": follow_ttft, "cold_ttft_s": cold_ttft,
            "new_tokens": statistics.median(r[2] for r in results[1:])}


def build_llama_bench() -> Path:
    binary = OUT / "llama.cpp-build" / "bin" / "llama-bench"
    if binary.exists():
        return binary
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = version("llama-cpp-python")
    sdist_dir = OUT / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "-d", str(sdist_dir), f"llama-cpp-python=={wanted}"], check=True)
    archive = next(sdist_dir.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(sdist_dir, filter="data")
    source = next(p for p in sdist_dir.glob("llama_cpp_python-*") if p.is_dir()) / "vendor" / "llama.cpp"
    build = OUT / "llama.cpp-build"
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-bench", "-j", "2"], check=True)
    return binary


def bench_llama_bench(binary: Path, model: Path, threads: int, tokens: int) -> dict[str, float]:
    out = subprocess.run([str(binary), "-m", str(model), "-t", str(threads), "-p", "512",
                          "-n", str(tokens), "-r", "3", "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    result: dict[str, float] = {}
    for row in rows:
        key = "gen_tps" if row.get("n_gen", 0) > 0 else "prefill_tps"
        result[key] = float(row["avg_ts"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--llama-bench", type=Path, default=None)
    parser.add_argument("--build-llama-bench", action="store_true")
    args = parser.parse_args()
    model = args.model or embedded_default_model_path()

    engine = bench_engine(model, args.threads, args.tokens, args.runs)
    direct = bench_direct(model, args.threads, args.tokens, args.runs)
    follow = bench_follow_up(model, args.threads)
    reference: dict[str, float] = {}
    binary = args.llama_bench or (build_llama_bench() if args.build_llama_bench else None)
    if binary:
        reference = bench_llama_bench(binary, model, args.threads, args.tokens)

    print(f"Model {model.name}, {args.threads} threads, greedy, {args.tokens} tokens max, "
          f"median of {args.runs} runs after a warm-up.\n")
    print("| path | generation tokens/s | time to first token | prefill tokens/s |")
    print("|---|---|---|---|")
    print(f"| Bastion engine (child process) | {engine['gen_tps']:.1f} | {engine['ttft_s'] * 1000:.0f} ms "
          f"| {engine['prefill_tps']:.0f} |")
    print(f"| llama-cpp-python, in process (create_chat_completion) | {direct['gen_tps']:.1f} | "
          f"{direct['ttft_s'] * 1000:.0f} ms | – |")
    if reference:
        print(f"| llama-bench (llama.cpp {version('llama-cpp-python')} vendored) | "
              f"{reference.get('gen_tps', 0):.1f} | – | {reference.get('prefill_tps', 0):.0f} |")
    print()
    print(f"- engine / direct generation: **{engine['gen_tps'] / direct['gen_tps']:.2f}** (target ≥ 0.97)")
    if reference.get("gen_tps"):
        print(f"- engine / llama-bench generation: **{engine['gen_tps'] / reference['gen_tps']:.2f}** "
              "(target ≥ 0.90)")
    print(f"- follow-up turn: time to first token {follow['follow_ttft_s'] * 1000:.0f} ms for "
          f"{follow['new_tokens']:.0f} new tokens; the same number of tokens prefilled cold: "
          f"{follow['cold_ttft_s'] * 1000:.0f} ms → ratio **{follow['follow_ttft_s'] / follow['cold_ttft_s']:.2f}** "
          "(target ≤ 1.2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
