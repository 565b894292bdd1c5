"""The remote engine against the local engine on the same model, machine and thread count.

Starts llama-cpp-python's own server (``llama_cpp.server``, a test dependency) on 127.0.0.1 with
the embedded SmolLM2 and one thread, loads the same file in Bastion's local engine with one
thread, then alternates answers between the two so both see the same load. Prints a Markdown
table: time to first token, decode tokens/s, time from Stop to the answer's end (as the caller
sees it), the first token of the answer asked right after a Stop (slow if the engine still works
on the stopped one), and the ratio remote / local for each.

    .venv/bin/python bench/remote_bench.py [--runs 5] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TOKEN = "bench-token-0123456789"
LAUNCH = textwrap.dedent(
    """
    import runpy, sys
    from bastion.models.llama_backends import load_cpu_backend
    load_cpu_backend()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__")
    """
)
QUESTION = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ["BASTION_HOME"] = tempfile.mkdtemp(prefix="bastion-remote-bench-")
    import bastion.desktop  # noqa: F401 - offline environment
    from bastion.models.catalog import embedded_default_model_path
    from bastion.models.engine import Engine
    from bastion.models.engine_types import ChatDelta, ChatDone, LoadOptions, Sampling
    from bastion.models.remote_engine import RemoteEngine
    from bastion.models.remote_http import RemoteEndpoint

    model = Path(embedded_default_model_path())
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--model", str(model), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "2048",
         "--api_key", TOKEN, "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not ready(port):
            if server.poll() is not None:
                print("llama_cpp.server did not start", file=sys.stderr)
                return 1
            time.sleep(0.5)
        remote = RemoteEngine(RemoteEndpoint.parse(f"http://127.0.0.1:{port}/v1", TOKEN))
        remote.load("smollm2", LoadOptions(n_ctx=2048))
        local = Engine()
        local.load(model, LoadOptions(n_ctx=2048, n_threads=1))
        sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
        engines = {"local": local, "remote": remote}
        ttft: dict[str, list[float]] = {name: [] for name in engines}
        tps: dict[str, list[float]] = {name: [] for name in engines}
        stop: dict[str, list[float]] = {name: [] for name in engines}
        next_ttft: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.runs):
            for name, engine in engines.items():
                *_, done = engine.chat(QUESTION, sampling)
                assert isinstance(done, ChatDone)
                ttft[name].append(done.stats.time_to_first_token_s)
                tps[name].append(done.stats.generation_tps)
                # Stop after the fifth token: time from cancel() to the answer's last event.
                deltas, asked = 0, 0.0
                for event in engine.chat(QUESTION, Sampling(max_tokens=2000, temperature=0.0)):
                    if isinstance(event, ChatDelta):
                        deltas += 1
                        if deltas == 5:
                            asked = time.perf_counter()
                            engine.cancel()
                stop[name].append(time.perf_counter() - asked)
                # The next answer right after a Stop: slow if the engine still generates the old.
                *_, after = engine.chat(QUESTION, Sampling(max_tokens=1, temperature=0.0))
                assert isinstance(after, ChatDone)
                next_ttft[name].append(after.stats.time_to_first_token_s)
        local.close()
        remote.close()
    finally:
        server.terminate()
        server.wait(20)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"SmolLM2-135M Q4_1, 1 thread each, greedy, {args.max_tokens} tokens, median of "
          f"{args.runs} alternating runs (remote: llama_cpp.server on 127.0.0.1)\n")
    print("| measure | local engine | remote engine | remote / local |")
    print("|---|---:|---:|---:|")
    for label, values, unit in (("time to first token", ttft, "ms"),
                                ("decode tokens/s", tps, ""),
                                ("Stop to end of answer", stop, "ms"),
                                ("first token of the next answer after a Stop", next_ttft, "ms")):
        scale = 1000 if unit == "ms" else 1
        lo, re_ = med(values["local"]) * scale, med(values["remote"]) * scale
        print(f"| {label} | {lo:.1f} {unit} | {re_:.1f} {unit} | {re_ / lo:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
