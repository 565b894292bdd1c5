"""The local API on the real embedded model: latency through HTTP, how fast a gone client frees
the engine, and the API's tokens/s against the in-process engine. Prints Markdown tables.

    .venv/bin/python bench/api_bench.py [--runs 3] [--tokens 128] [--skip-latency]

Throughput: the same prompt, greedy, ``--tokens`` max tokens, ``n_threads 1`` (set in the
scratch data folder's settings: the machine is shared), answered (a) in-process by
``answer_once`` on ``App().engine()``, (b) through ``POST /v1/chat/completions`` streaming with
the official ``openai`` client, one stream, and (c) four concurrent streams. The service
answers one request at a time, in arrival order, so four streams queue: their aggregate
tokens/s can at best equal one stream's, and each stream's own rate (counted from its request,
queueing included) is about a quarter of it. The three are interleaved round by round and the
medians reported. Rates count completion tokens (the engine's count in-process, the API's
``usage`` through HTTP) over the time from the request to the last token, so prefill is in
both; "decode" is tokens after the first over the time from the first token to the last.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens of each answer")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams")
    parser.add_argument("--skip-latency", action="store_true",
                        help="only the tokens/s table")
    args = parser.parse_args()
    os.environ["BASTION_HOME"] = tempfile.mkdtemp(prefix="bastion-api-bench-")
    import bastion.desktop  # noqa: F401 - offline environment
    from bastion.desktop.paths import data_paths
    from bastion.desktop.settings import Settings

    settings_file = data_paths().settings_file
    settings = Settings.load(settings_file)
    settings.n_threads = 1  # the machine is shared: one thread, as cli_bench uses
    settings.save(settings_file)
    from bastion.desktop.api.access_token import load_or_create_token
    from bastion.desktop.api.server import ApiServer
    from bastion.desktop.api.service import AnswerService
    from bastion.desktop.api.wiring import service_parts
    from bastion.desktop.app import App

    with App() as app:
        parts = service_parts(app)
        token = load_or_create_token(app.paths.home)[0]
        service = AnswerService(parts)
        server = ApiServer(service, token, port=0)
        server.start()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def post(payload: dict[str, Any]) -> tuple[http.client.HTTPConnection, socket.socket, http.client.HTTPResponse]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            conn.request("POST", "/v1/chat/completions", json.dumps(payload).encode(), headers)
            sock = conn.sock
            return conn, sock, conn.getresponse()

        question = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
        throughput_table(app, parts, server.port, token, question, args)
        whole: list[float] = []
        first: list[float] = []
        freed: list[float] = []
        for _ in range(0 if args.skip_latency else args.runs):
            t0 = time.perf_counter()
            conn, _, response = post({"model": parts.chat_model, "messages": question,
                                      "max_tokens": 32, "temperature": 0})
            response.read()
            whole.append(time.perf_counter() - t0)
            conn.close()

            t0 = time.perf_counter()
            conn, sock, response = post({"model": parts.chat_model, "messages": question,
                                         "max_tokens": 1000, "temperature": 0, "stream": True})
            while b'"content": "' not in response.fp.readline():
                pass
            first.append(time.perf_counter() - t0)
            for _ in range(5):
                response.fp.readline()
            gone = time.perf_counter()
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            while service._pending:  # the answer thread is free again
                time.sleep(0.005)
            freed.append(time.perf_counter() - gone)
        server.stop()
    if args.skip_latency:
        return 0

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s (max {max(values):.2f})"

    print(f"{parts.chat_model}, {args.runs} runs, medians:\n")
    print("| 32-token answer, non-streaming | first streamed token | client gone → engine free |")
    print("|---|---|---|")
    print(f"| {cell(whole)} | {cell(first)} | {cell(freed)} |")
    return 0


@dataclass
class Run:
    """One answer: completion tokens, and seconds from the request to its first and last token."""

    tokens: int
    first_s: float
    last_s: float

    @property
    def rate(self) -> float:
        return self.tokens / self.last_s

    @property
    def decode_rate(self) -> float:
        return (self.tokens - 1) / max(self.last_s - self.first_s, 1e-9)


def in_process(app: Any, question: str, max_tokens: int) -> Run:
    """One greedy answer by ``answer_once`` on the application's engine, no HTTP."""
    from bastion.desktop.answering import AnswerConfig, AnswerDelta, answer_once
    from bastion.models.engine_types import Sampling

    sampling = Sampling(**{**app.settings.sampling().to_dict(), "max_tokens": max_tokens,
                           "temperature": 0.0})
    config = AnswerConfig(sampling=sampling, system_prompt=app.settings.system_prompt)
    started = time.perf_counter()
    first = last = 0.0
    with answer_once(question, config, app.engine()) as stream:
        for event in stream:
            if isinstance(event, AnswerDelta):
                last = time.perf_counter() - started
                first = first or last
        record = stream.record
    assert record is not None and record.stats is not None
    return Run(record.stats.generated_tokens, first, last)


def through_api(client: Any, model: str, messages: list[dict[str, str]], max_tokens: int,
                started: float) -> Run:
    """One greedy streamed answer through ``/v1/chat/completions``; times count from
    ``started`` (the moment all concurrent streams were sent)."""
    first = last = 0.0
    tokens = 0
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter() - started
            first = first or last
    return Run(tokens, first, last)


def throughput_table(app: Any, parts: Any, port: int, token: str,
                     messages: list[dict[str, str]], args: argparse.Namespace) -> None:
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token,
                           max_retries=0, timeout=600)
    model, question, n = parts.chat_model, messages[-1]["content"], args.streams
    local: list[Run] = []
    single: list[Run] = []
    aggregate: list[float] = []  # all streams' tokens over the time until the last one ended
    per_stream: list[float] = []
    slowest: list[float] = []  # the stream served last, per round
    in_process(app, question, args.tokens)  # warm-up: the first answer pays one-off costs
    ratios: list[float] = []  # API, 1 stream over in-process, within one round

    def one_local() -> None:
        local.append(in_process(app, question, args.tokens))

    def one_single() -> None:
        single.append(through_api(client, model, messages, args.tokens, time.perf_counter()))

    def concurrent() -> None:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n) as pool:
            runs = list(pool.map(through_api, [client] * n, [model] * n, [messages] * n,
                                 [args.tokens] * n, [started] * n))
        aggregate.append(sum(r.tokens for r in runs) / max(r.last_s for r in runs))
        per_stream.extend(r.rate for r in runs)
        slowest.append(min(r.rate for r in runs))

    order = [one_local, one_single, concurrent]
    for round_ in range(args.runs):  # interleaved, order rotated: the machine's load drifts
        for step in order[round_ % 3:] + order[:round_ % 3]:
            step()
        ratios.append(single[-1].rate / local[-1].rate)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    base = med([r.rate for r in local])
    rows = [
        ("in-process `answer_once`", base, med([r.decode_rate for r in local]), "1.00×"),
        ("API, 1 stream", med([r.rate for r in single]), med([r.decode_rate for r in single]),
         None),
        (f"API, {n} concurrent streams: aggregate", med(aggregate), None, None),
        (f"API, {n} concurrent streams: each stream (queueing included)", med(per_stream),
         None, None),
        (f"API, {n} concurrent streams: the stream served last", med(slowest), None, None),
    ]
    print(f"{model}, greedy, max_tokens {args.tokens} ({med([r.tokens for r in local]):.0f} "
          f"generated), n_threads 1, {args.runs} interleaved rounds, medians:\n")
    print("| path | tokens/s (request → last token) | decode tokens/s | vs in-process "
          "(target ≥ 0.95×) |")
    print("|---|---|---|---|")
    for name, rate, decode, ratio in rows:
        verdict = ratio or f"{rate / base:.2f}× ({'meets' if rate / base >= 0.95 else 'below'})"
        if "each stream" in name:
            verdict = f"{rate / base:.2f}× (queued: the k-th served gets ≈ 1/k)"
        elif "served last" in name:
            verdict = f"{rate / base:.2f}× (queued: ≈ 1/{n})"
        decode_cell = f"{decode:.1f}" if decode is not None else "n/a"
        print(f"| {name} | {rate:.1f} | {decode_cell} | {verdict} |")
    print(f"\nAPI, 1 stream vs in-process, per round: median {med(ratios):.2f}× (range "
          f"{min(ratios):.2f}–{max(ratios):.2f}).\n")


if __name__ == "__main__":
    raise SystemExit(main())
