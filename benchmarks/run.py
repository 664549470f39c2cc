"""AffectVerse performance suite: what the Emotion World Module costs against the plain / LoRA-only thinker.

    python -m benchmarks.run                    # CPU, a few minutes; writes benchmarks/results.json
    python -m benchmarks.run --gpu-7b           # on a GPU machine: the 7B-shaped random thinker in bf16

Every comparison runs both sides in one process, interleaved (A, B, B, A, ...), and reports medians and a ratio
(`benchmarks/timing.py`: the one timing helper). Not part of the test suite's pass/fail. Sections, one module each:

1. `size.py`: EWM parameters at the 7B preset and the EWM's share of a forward's FLOPs.
2. `train_step.py`: one optimizer step, AffectVerse against the LoRA-only thinker; time and peak memory.
3. `inference.py`: prefill and per-token decode against the plain thinker with the same weights.
4. `data_path.py`: clips per second for decode + preprocess over the demo clips.
5. `host_syncs.py`: sync-inducing ops of a training step with and without the EWM, and the EWM alone.
6. `wetr_prefill.py`: prefill time and peak memory with WETR's token refinement against without.
7. `train_step.py` (`split`): one optimizer step with the clip split against the paper's embedded split.
8. `gpu.py` (`--gpu-7b`): the 7B shape on CUDA in bf16.
9. `stream.py`: a 10-update belief trajectory through the stream against one-shot scorings of the growing prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from benchmarks.data_path import data_section
from benchmarks.gpu import gpu_section
from benchmarks.host_syncs import sync_section
from benchmarks.inference import inference_section
from benchmarks.size import size_section
from benchmarks.stream import stream_section
from benchmarks.train_step import split_section, train_section
from benchmarks.wetr_prefill import wetr_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGETS = {
    "ewm_parameters": ("<=", 26e6),
    "ewm_flops_fraction": ("<=", 0.01),
    "train_step_time_ratio": ("<=", 1.10),
    "train_peak_memory_ratio": ("<=", 1.05),
    "prefill_time_ratio": ("<=", 1.05),
    "decode_time_per_token_ratio": ("<=", 1.02),
    "wetr_prefill_time_ratio": ("<=", 0.8),  # "well below 1"
    "split_train_step_time_ratio": ("<=", 1.10),  # the future segment costs encoder work, not LLM work
    "stream_trajectory_time_ratio": ("<=", 0.35),
}


def verdicts(figures: dict) -> dict:
    flat = {**figures.get("size", {}), **figures.get("train_step", {}), **figures.get("inference", {})}
    if "time_ratio" in figures.get("wetr", {}):
        flat["wetr_prefill_time_ratio"] = figures["wetr"]["time_ratio"]
    if "split_train_step_time_ratio" in figures.get("split", {}):
        flat["split_train_step_time_ratio"] = figures["split"]["split_train_step_time_ratio"]
    if "time_ratio" in figures.get("stream", {}):
        flat["stream_trajectory_time_ratio"] = figures["stream"]["time_ratio"]
    out = {}
    for name, (op, target) in TARGETS.items():
        if name in flat:
            out[name] = {"value": flat[name], "target": f"{op} {target:g}", "met": bool(flat[name] <= target)}
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"))
    parser.add_argument(
        "--only", nargs="+", choices=["size", "train_step", "inference", "syncs", "wetr", "data", "split", "stream"]
    )
    parser.add_argument("--gpu-7b", action="store_true", help="run only the 7B-shaped bf16 comparison on CUDA")
    parser.add_argument("--compile-ewm", action="store_true", help="--gpu-7b: also measure with compile_ewm()")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sections = {
        "size": size_section,
        "train_step": lambda: train_section(args.repeats),
        "inference": lambda: inference_section(args.repeats),
        "syncs": lambda: sync_section(args.repeats),
        "wetr": lambda: wetr_section(args.repeats),
        "data": data_section,
        "split": lambda: split_section(args.repeats),
        "stream": lambda: stream_section(max(1, args.repeats // 3)),
    }
    figures = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or "unknown",
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": "cpu",
        }
    }
    if args.gpu_7b:
        if not torch.cuda.is_available():
            parser.error("--gpu-7b needs a CUDA device")
        preset = os.path.join(ROOT, "configuration", "affectverse-7b.json")
        figures = {"gpu_7b": gpu_section(preset, "cuda", torch.bfloat16, args.repeats, compile_ewm=args.compile_ewm)}
        print(json.dumps(figures, indent=1))
        with open(args.output.replace("results.json", "results-gpu.json"), "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
        return 0
    for name in args.only or sections:
        start = time.perf_counter()
        figures[name] = sections[name]()
        print(f"{name}: {json.dumps(figures[name], indent=1)}  ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.only and os.path.isfile(args.output):  # a partial run updates its sections, keeps the others
        with open(args.output, encoding="utf-8") as handle:
            figures = {**json.load(handle), **figures}
    figures["targets"] = verdicts(figures)
    print("\n| target | value | goal | met |\n|---|---|---|---|")
    for name, verdict in figures["targets"].items():
        print(f"| {name} | {verdict['value']:.4g} | {verdict['target']} | {'yes' if verdict['met'] else 'NO'} |")
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
