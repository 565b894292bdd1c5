"""The local API on the real embedded model: latency through HTTP and how fast a gone client frees
the engine. Prints a Markdown table.

    .venv/bin/python bench/api_bench.py [--runs 3]
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["BASTION_HOME"] = tempfile.mkdtemp(prefix="bastion-api-bench-")
    import bastion.desktop  # noqa: F401 - offline environment
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

        def post(payload: dict) -> tuple[http.client.HTTPConnection, socket.socket, http.client.HTTPResponse]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            conn.request("POST", "/v1/chat/completions", json.dumps(payload).encode(), headers)
            sock = conn.sock
            return conn, sock, conn.getresponse()

        question = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
        whole, first, freed = [], [], []
        for _ in range(args.runs):
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

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s (max {max(values):.2f})"

    print(f"{parts.chat_model}, {args.runs} runs, medians:\n")
    print("| 32-token answer, non-streaming | first streamed token | client gone → engine free |")
    print("|---|---|---|")
    print(f"| {cell(whole)} | {cell(first)} | {cell(freed)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
