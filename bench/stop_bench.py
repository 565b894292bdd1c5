"""Stop latency: how long after Stop the engine's answer ends, during a long prefill and during
generation.

    .venv/bin/python bench/stop_bench.py [--model PATH] [--threads 2] [--prompt-tokens 1500]
                                         [--batch 128 512] [--runs 5]

A prompt of about ``--prompt-tokens`` tokens is sent; ``Engine.cancel()`` is called at a few
moments inside the prefill (and once during generation); the latency is the time from the call to
the engine's last event. Target: under 1 s in every case. Prints Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import bastion.desktop  # noqa: F401 - offline environment
from bastion.models.catalog import embedded_default_model_path
from bastion.models.engine import Engine
from bastion.models.engine_types import ChatDone, LoadOptions, Sampling

SAMPLING = Sampling(max_tokens=256, temperature=0.0, repeat_penalty=1.0)


def long_prompt(engine: Engine, tokens: int, run: int) -> list[dict[str, str]]:
    sentence = "The committee reviewed clause {i} of the agreement and noted no objection. "
    text = f"Run {run}. " + "".join(sentence.format(i=i) for i in range(tokens // 12))
    while engine.count_tokens([text])[0] < tokens:
        text += sentence.format(i=len(text))
    return [{"role": "user", "content": f"Summarise this text.\n\n{text}"}]


def stop_after(engine: Engine, messages: list[dict[str, str]], delay_s: float) -> tuple[float, ChatDone]:
    """Cancel ``delay_s`` after sending; the latency from cancel() to the last event."""
    cancelled_at: list[float] = []

    def cancel() -> None:
        cancelled_at.append(time.perf_counter())
        engine.cancel()

    timer = threading.Timer(delay_s, cancel)
    done = None
    timer.start()
    for event in engine.chat(messages, SAMPLING):
        if isinstance(event, ChatDone):
            done = event
    ended = time.perf_counter()
    timer.join()
    assert done is not None
    latency = ended - cancelled_at[0] if cancelled_at else float("nan")
    return latency, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = args.model or embedded_default_model_path()

    print(f"Model {model.name}, {args.threads} threads, a prompt of ~{args.prompt_tokens} tokens; "
          f"Stop at the given moment after sending; {args.runs} runs each.\n")
    print("| n_batch | Stop at | where it landed | latency median | latency max | prefill tokens/s |")
    print("|---:|---|---|---:|---:|---:|")
    for n_batch in args.batch:
        with Engine() as engine:
            info = engine.load(model, LoadOptions(n_ctx=4096, n_threads=args.threads, n_batch=n_batch))
            # The full prefill time, to place the Stops inside it.
            _, full = stop_after(engine, long_prompt(engine, args.prompt_tokens, -1), 3600.0)
            prefill_s = full.stats.prefill_s
            moments = {"10% of prefill": 0.1 * prefill_s, "50% of prefill": 0.5 * prefill_s,
                       "90% of prefill": 0.9 * prefill_s, "during generation": prefill_s + 0.5}
            for label, delay in moments.items():
                latencies, landed = [], set()
                for run in range(args.runs):
                    latency, done = stop_after(engine, long_prompt(engine, args.prompt_tokens, run), delay)
                    latencies.append(latency)
                    landed.add("generation" if done.stats.generated_tokens else "prefill")
                print(f"| {n_batch} | {label} ({delay:.2f} s) | {', '.join(sorted(landed))} | "
                      f"{statistics.median(latencies) * 1000:.0f} ms | {max(latencies) * 1000:.0f} ms | "
                      f"{full.stats.prefill_tps:.0f} |")
        print(f"\nCPU kernels: {info.cpu_kernels}.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
