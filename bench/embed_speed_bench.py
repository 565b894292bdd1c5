"""Embedding speed levers for all-MiniLM-L6-v2 on CPU: chunks/s and cosine against today's vectors.

Usage:
    .venv/bin/python bench/embed_speed_bench.py [--chunks 2000] [--slice 250] [--data PATH]
        [--levers current,batch64,sorted,...,int8-sorted] [--bf16-probe 32]

Chunks are real: NFCorpus records ("title" + blank line + "text", as ``nfcorpus_bench.py`` writes
them) cut by the library's own chunker at the embedder's limit, in corpus order, so a call sees
what a sync hands the embedder. Every lever embeds the same chunks on one loaded model.

The machine is shared (2 cores, other engineers, a training job), so levers are interleaved: the
chunks are cut into slices and each slice goes through every lever in turn (the order rotates per
slice) before the next slice starts. A lever's rate is its chunks over its summed wall time; the
ratio to ``current`` is the figure to read, not the absolute rate. CPU seconds (this process) are
printed too: on an oversubscribed machine they move less than wall time.

Levers (``current`` is what ``SentenceTransformerEmbedder.embed`` did before issue 15: calls of
``EMBED_BATCH`` = 64 chunks, ``encode(batch_size=32)``, which length-sorts inside each call):

- ``batch64``: one forward pass per call of 64.
- ``sorted``: whole calls of ``--window`` chunks sorted by token count, batches closed at a padded
  token budget (``--token-budget``), so short chunks are not padded to a long neighbour.
- ``embedder``: ``SentenceTransformerEmbedder.embed`` as it is now in this checkout (since issue 15:
  each call of 64 sorted by token count, batches at 32 full-length sequences' worth of tokens).
- ``seq128``: ``max_seq_length`` 128 (MiniLM's training length): longer chunks are truncated.
- ``threads1``: ``torch.set_num_threads(1)`` (the default is one per core).
- ``onnx`` / ``onnx-sorted``: fp32 ONNX export of the same weights (``torch.onnx``, mean pooling
  and normalisation in the graph) run by onnxruntime at ``ORT_ENABLE_ALL``; needs ``onnx`` to
  export and ``onnxruntime`` to run (skipped, saying so, when they are not importable).
- ``onnx-int8-sorted``: that ONNX graph quantized dynamically by onnxruntime (weights int8 per
  output channel at 7 bits, activations uint8 per batch), run like ``sorted``.
- ``int8`` / ``int8-sorted``: a copy of the model with every ``nn.Linear`` quantized dynamically to
  int8 by torch (``quantize_dynamic``, weights per output channel, activations per batch; fbgemm
  kernels on x86), run like ``current`` / ``sorted``. Needs no new dependency.
- bf16 autocast is probed on ``--bf16-probe`` chunks only (it is several times slower on CPUs
  without native bf16, such as this AVX2 one).

``torch.inference_mode`` and SDPA attention are not levers here: sentence-transformers already
runs ``encode`` under ``inference_mode`` and transformers loads BERT with ``sdpa`` by default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import bastion.desktop  # noqa: F401 - offline environment first
from bastion.store.chunking import chunk_pages
from bastion.store.embedder import (
    SentenceTransformerEmbedder,
    default_embedder_folder,
    token_budget_batches,
)
from bastion.store.parsers.types import PageText
from bastion.store.sync import EMBED_BATCH

REPO = Path(__file__).resolve().parent.parent
Vectors = NDArray[np.float32]
Lever = Callable[[list[str]], Vectors]


def load_chunks(data: Path, count: int, embedder: SentenceTransformerEmbedder) -> list[str]:
    """The first ``count`` chunks of NFCorpus in corpus order, cut by the library's chunker."""
    tokenizer = embedder.tokenizer()
    texts: list[str] = []
    with (data / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            page = PageText(f"{record.get('title', '')}\n\n{record.get('text', '')}\n")
            texts.extend(c.text for c in chunk_pages([page], tokenizer, embedder.max_tokens))
            if len(texts) >= count:
                break
    return texts[:count]


def in_calls(texts: list[str], size: int, embed: Lever) -> Vectors:
    """``embed`` called on consecutive groups of ``size`` texts, as the sync calls the embedder."""
    return np.concatenate([embed(texts[i : i + size]) for i in range(0, len(texts), size)])


class OnnxMiniLM:
    """The loaded model's BERT + mean pooling + normalisation exported to fp32 ONNX, run by onnxruntime."""

    def __init__(self, model: Any, path: Path, quantized: bool = False) -> None:
        import onnxruntime as ort
        import torch

        bert = model[0].auto_model.eval()

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2, dim=1)

        if not path.exists():
            sample = torch.ones(2, 16, dtype=torch.long)
            torch.onnx.export(
                Pooled().eval(), (sample, sample), str(path), input_names=["input_ids", "attention_mask"],
                output_names=["embedding"], opset_version=17, dynamo=False,
                dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}, "embedding": {0: "b"}},
            )
        if quantized:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fp32, path = path, path.with_name(path.stem + "-int8.onnx")
            if not path.exists():
                # Weights int8 per output channel, activations uint8 per batch. reduce_range keeps
                # weights to 7 bits: AVX2's u8 × s8 product (no VNNI) saturates at 8 (onnxruntime).
                quantize_dynamic(str(fp32), str(path), per_channel=True, reduce_range=True,
                                 weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = model.tokenizer
        self.max_length = int(model.max_seq_length)

    def run(self, texts: list[str]) -> Vectors:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)


def build_levers(args: argparse.Namespace, embedder: SentenceTransformerEmbedder, work: Path) -> dict[str, Lever]:
    import torch

    model = embedder._load()
    count = embedder.tokenizer().count

    def encode(texts: list[str], batch_size: int) -> Vectors:
        return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    def sorted_by_tokens(run: Callable[[list[str]], Vectors]) -> Lever:
        def lever(texts: list[str]) -> Vectors:
            def window(part: list[str]) -> Vectors:
                out = np.zeros((len(part), embedder.dimension), dtype=np.float32)
                for batch in token_budget_batches(count(part), args.token_budget, args.max_batch):
                    out[batch] = run([part[i] for i in batch])
                return out
            return in_calls(texts, args.window, window)
        return lever

    def seq128(texts: list[str]) -> Vectors:
        model.max_seq_length = 128
        try:
            return in_calls(texts, EMBED_BATCH, lambda t: encode(t, 32))
        finally:
            model.max_seq_length = embedder.max_tokens

    def threads1(texts: list[str]) -> Vectors:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return in_calls(texts, EMBED_BATCH, lambda t: encode(t, 32))
        finally:
            torch.set_num_threads(before)

    def int8_model() -> Any:
        import copy
        import warnings

        with warnings.catch_warnings():  # torch.ao.quantization is deprecated (said in the README)
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig})

    levers: dict[str, Lever] = {
        "current": lambda t: in_calls(t, EMBED_BATCH, lambda c: encode(c, 32)),
        "batch64": lambda t: in_calls(t, EMBED_BATCH, lambda c: encode(c, 64)),
        "sorted": sorted_by_tokens(lambda c: encode(c, len(c))),
        "embedder": lambda t: in_calls(t, EMBED_BATCH, embedder.embed),
        "seq128": seq128,
        "threads1": threads1,
    }
    wanted = [name.strip() for name in args.levers.split(",") if name.strip()]
    if any(name.startswith("int8") for name in wanted):
        small = int8_model()

        def encode_int8(texts: list[str], batch_size: int) -> Vectors:
            return np.asarray(small.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                           convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

        levers["int8"] = lambda t: in_calls(t, EMBED_BATCH, lambda c: encode_int8(c, 32))
        levers["int8-sorted"] = sorted_by_tokens(lambda c: encode_int8(c, len(c)))
    if any(name.startswith("onnx") for name in wanted):
        try:
            onnx = OnnxMiniLM(model, work / "minilm-fp32.onnx")
        except ImportError as error:
            print(f"<!-- onnx levers skipped: {error} (pip install onnx onnxruntime to measure them) -->")
        else:
            levers["onnx"] = lambda t: in_calls(t, EMBED_BATCH, onnx.run)
            levers["onnx-sorted"] = sorted_by_tokens(onnx.run)
            if "onnx-int8-sorted" in wanted:
                onnx_int8 = OnnxMiniLM(model, work / "minilm-fp32.onnx", quantized=True)
                levers["onnx-int8-sorted"] = sorted_by_tokens(onnx_int8.run)
    return {name: levers[name] for name in wanted if name in levers}


def bf16_probe(embedder: SentenceTransformerEmbedder, texts: list[str]) -> tuple[float, float, float]:
    """fp32 and bf16-autocast seconds on ``texts`` (one call), and the lowest cosine between them."""
    import torch

    model = embedder._load()
    started = time.perf_counter()
    base = model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    fp32_s = time.perf_counter() - started
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    bf16_s = time.perf_counter() - started
    return fp32_s, bf16_s, float(np.min(np.sum(np.asarray(base) * np.asarray(half), axis=1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/nfcorpus")
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--slice", type=int, default=250, help="chunks per interleaved slice")
    parser.add_argument("--window", type=int, default=256, help="chunks per call for the sorted levers")
    parser.add_argument("--token-budget", type=int, default=8192, help="padded tokens per forward pass")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--levers", default="current,batch64,sorted,embedder,seq128,threads1,onnx,onnx-sorted,int8,int8-sorted")
    parser.add_argument("--bf16-probe", type=int, default=32, help="chunks for the bf16 probe (0: skip)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bastion-embed-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    embedder = SentenceTransformerEmbedder(default_embedder_folder())
    texts = load_chunks(args.data.resolve(), args.chunks, embedder)
    tokens = embedder.tokenizer().count(texts)
    levers = build_levers(args, embedder, args.workdir)
    for lever in levers.values():
        lever(texts[:8])  # warm-up: first calls allocate and (for ONNX) optimise the graph
    print(f"# Embedding speed levers ({time.strftime('%Y-%m-%d %H:%M')}, {len(texts)} NFCorpus chunks, "
          f"mean {np.mean(tokens):.0f} tokens, max {max(tokens)}; 2 cores shared with other work: "
          "read the ratios, measured interleaved in this run)\n", flush=True)

    seconds = dict.fromkeys(levers, 0.0)
    cpu = dict.fromkeys(levers, 0.0)
    vectors: dict[str, list[Vectors]] = {name: [] for name in levers}
    names = list(levers)
    for n, start in enumerate(range(0, len(texts), args.slice)):
        part = texts[start : start + args.slice]
        for name in names[n % len(names):] + names[: n % len(names)]:
            began, began_cpu = time.perf_counter(), time.process_time()
            vectors[name].append(levers[name](part))
            seconds[name] += time.perf_counter() - began
            cpu[name] += time.process_time() - began_cpu
        done = start + len(part)
        print(f"<!-- {done}/{len(texts)}: " + ", ".join(f"{k} {done / s:.1f}" for k, s in seconds.items()) + " -->",
              flush=True)

    base_name = "current" if "current" in levers else names[0]
    base = np.concatenate(vectors[base_name])
    base_rate = len(texts) / seconds[base_name]
    print(f"| lever | chunks/s | ratio to {base_name} | CPU-s per 100 chunks | CPU ratio | cosine min | cosine mean |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        cos = np.sum(np.concatenate(vectors[name]) * base, axis=1)
        rate = len(texts) / seconds[name]
        print(f"| {name} | {rate:.2f} | {rate / base_rate:.2f} | {100 * cpu[name] / len(texts):.1f} "
              f"| {cpu[base_name] / cpu[name]:.2f} | {cos.min():.5f} | {cos.mean():.5f} |")
    if args.bf16_probe:
        fp32_s, bf16_s, low = bf16_probe(embedder, texts[: args.bf16_probe])
        print(f"| bf16 autocast (probe, {args.bf16_probe} chunks, one call) | {args.bf16_probe / bf16_s:.2f} "
              f"| {fp32_s / bf16_s:.2f} (vs fp32, same call) | | | {low:.5f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
