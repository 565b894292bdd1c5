"""``bastion finetune``: train a LoRA adapter on your data; ``bastion finetune merge``: a
standalone quantized model from an adapter and its base."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from bastion.desktop.cli.arg_types import (
    ADAPTER_SCALE_LIMIT,
    float_in,
    positive_float,
    positive_int,
    setting,
)
from bastion.desktop.paths import data_paths


def projections(text: str) -> tuple[str, ...]:
    """``--targets``: a named group or projection names (checked before anything loads)."""
    from bastion.models.finetune_types import parse_targets

    try:
        return parse_targets(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


projections.__name__ = "projections"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "finetune", help="train a LoRA adapter on chat JSONL (or: finetune merge NAME)",
        description="bastion finetune NAME --data FILE.jsonl [--base MODEL] [options]\n"
                    "bastion finetune NAME --questions QUESTIONS.jsonl --collection C [options]\n"
                    "bastion finetune merge NAME [--scale S] [--quantization Q8_0] [--as MODEL]\n\n"
                    "With --questions (the lab's question-set format), each question is searched in\n"
                    "the collection and taught with the passages retrieval returns, distractors\n"
                    "among them, and some questions teach the abstention sentence (RAFT): an\n"
                    "adapter for answering from your documents.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the adapter to create (or 'merge')")
    parser.add_argument("adapter", nargs="?", help="after 'merge': the adapter to merge")
    parser.add_argument("--data", type=Path, help="chat-format JSONL (bastion chats export --format jsonl)")
    parser.add_argument("--questions", type=Path,
                        help="grounded training: a question set (JSONL: question, answers, "
                             "optional unanswerable), retrieved from --collection")
    parser.add_argument("--collection", action="append", default=[],
                        help="grounded training: a collection to retrieve from (repeatable)")
    parser.add_argument("--passages", type=positive_int, default=3,
                        help="grounded training: passages shown per example (default 3)")
    parser.add_argument("--passage-sentences", type=setting("passage_sentences"), default=None, metavar="N",
                        help="grounded training: sentences of each passage shown, as answers "
                             "show them (default: the passage_sentences setting; 0 = whole)")
    parser.add_argument("--abstention", type=float_in(0.0, 0.5), default=0.2,
                        help="grounded training: share of examples teaching abstention (default 0.2)")
    parser.add_argument("--answer-style", choices=("sentence", "as-given", "citation-first"),
                        default="sentence",
                        help="grounded training: teach the evidence sentence holding the answer "
                             "(default), the answer as given, or the sentence with its citation "
                             "first (\"[2] …\")")
    parser.add_argument("--base", help="base model id, file or path (default: the embedded SmolLM2)")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--rank", type=positive_int, default=8)
    parser.add_argument("--alpha", type=positive_int, default=16)
    parser.add_argument("--targets", type=projections, default=None, metavar="all|attention|mlp|NAMES",
                        help="projections to adapt (default 'attention': answers with the adapter "
                             "on stay at ~0.9x the base's speed or better); 'all' learns most (see README)")
    parser.add_argument("--lr", type=positive_float, default=5e-4, help="peak learning rate")
    parser.add_argument("--max-steps", type=positive_int, help="stop after this many steps")
    parser.add_argument("--batch-tokens", type=positive_int, default=None,
                        help="tokens per step (default: the trainer's; a longer example trains alone)")
    parser.add_argument("--max-seq-tokens", type=positive_int, default=None,
                        help="longer examples are left out (and counted), never cut")
    parser.add_argument("--checkpoint-every", type=positive_int, default=50)
    parser.add_argument("--eval-every", type=positive_int, default=None,
                        help="steps between held-out loss measurements (default: the trainer's)")
    parser.add_argument("--resume", action="store_true", help="continue a cancelled or crashed run")
    parser.add_argument("--scale", type=float_in(-ADAPTER_SCALE_LIMIT, ADAPTER_SCALE_LIMIT),
                        default=1.0, help="merge: the adapter's strength, from -4 to 4")
    parser.add_argument("--quantization", default="Q8_0", help="merge: Q4_0, Q4_1, Q8_0, Q4_K_M, … or F16")
    parser.add_argument("--as", dest="model_name", help="merge: the new model's name")
    parser.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    if args.name == "merge":
        return _merge(args)
    if args.adapter is not None:
        print(f"bastion: unexpected argument {args.adapter!r} (did you mean `finetune merge`?)", file=sys.stderr)
        return 2
    if (args.data is None) == (args.questions is None):
        print("bastion: finetune needs either --data FILE.jsonl (chat-format lines; `bastion chats "
              "export ID --format jsonl` writes them) or --questions FILE.jsonl --collection NAME "
              "(grounded training)", file=sys.stderr)
        return 2
    if args.questions is not None and not args.collection:
        print("bastion: --questions needs --collection NAME: the collection to retrieve passages from",
              file=sys.stderr)
        return 2
    from bastion.desktop import finetuning
    from bastion.desktop.grounded_training import GroundedOptions
    from bastion.desktop.settings import Settings
    from bastion.models.finetune_data import read_chat_jsonl
    from bastion.models.finetune_process import FinetuneProcess

    paths = data_paths()
    if args.questions is not None:
        finetuning.finetune_config(paths, args.name, args.questions, args.base)  # name and base first
        print(f"Retrieving passages for the questions of {args.questions.name}…", file=sys.stderr, flush=True)
        built = finetuning.grounded_data(
            paths, args.name, args.questions, args.collection,
            GroundedOptions(passages=args.passages, k=max(8, args.passages + 2),
                            abstention_fraction=args.abstention, answer_style=args.answer_style,
                            sentences=(Settings.load(paths.settings_file).passage_sentences
                                       if args.passage_sentences is None else args.passage_sentences)),
            reuse=args.resume)
        print(built.summary(), file=sys.stderr, flush=True)
        args.data = built.path
    else:
        read_chat_jsonl(args.data)  # the first bad line is reported before anything loads
    # Step sizes left unset keep the trainer's defaults, which bound a step's memory.
    sizes = {key: value for key, value in (("batch_tokens", args.batch_tokens),
                                            ("max_seq_tokens", args.max_seq_tokens),
                                            ("eval_every", args.eval_every),
                                            ("targets", args.targets)) if value}
    config = finetuning.finetune_config(
        paths, args.name, args.data, args.base, epochs=args.epochs, rank=args.rank,
        alpha=args.alpha, learning_rate=args.lr, max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every, resume=args.resume, **sizes)
    process = FinetuneProcess(config)
    events = finetuning.train(paths, config, process)
    stopping = False
    while True:
        try:
            for event in events:
                print(finetuning.describe(event), file=sys.stderr, flush=True)
            break
        except KeyboardInterrupt:
            if stopping:  # a second Ctrl-C: leave now
                with contextlib.suppress(Exception):
                    events.close()
                break
            # Told to the training process at once: it stops within a layer, saves a checkpoint
            # and ends the event stream; a run that finishes meanwhile is still registered.
            stopping = True
            process.cancel()
            print("\nStopping at the next layer and saving a checkpoint…", file=sys.stderr, flush=True)
    if stopping:
        again = (f"--questions {args.questions} " + " ".join(f"--collection {c}" for c in args.collection)
                 if args.questions is not None else f"--data {args.data}")
        print(f"Stopped. Continue with: bastion finetune {args.name} {again} --resume", file=sys.stderr)
        return 130
    return 0


def _merge(args: argparse.Namespace) -> int:
    from bastion.desktop import finetuning

    if not args.adapter:
        print("bastion: finetune merge needs the adapter's name", file=sys.stderr)
        return 2
    print(f"Merging {args.adapter} into its base and quantizing to {args.quantization}…", file=sys.stderr)
    path = finetuning.merge(data_paths(), args.adapter, scale=args.scale, quantization=args.quantization,
                            model_name=args.model_name, base=args.base)
    print(f"Registered the model {path.stem} ({path.stat().st_size / 1e6:.0f} MB): "
          f"bastion ask \"…\" --model {path.stem}")
    return 0
