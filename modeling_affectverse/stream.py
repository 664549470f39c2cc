"""`python -m modeling_affectverse.stream clip.mp4 [--model outputs/demo] [--chunk-seconds 2]`: a file played as a
stream. The file is decoded incrementally (`belief_stream.play`: PyAV, packet by packet, never the whole clip up
front), each chunk is pushed to a `BeliefStream`, the label probabilities are printed as a table row per update as
time advances, and the trajectory is written as JSON and a PNG plot (`<clip>.stream/` unless `--output`).

The command stands above the model package (it loads adapter folders with `loading.load`); the stream itself is
`belief_stream.py`, which ships as remote code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .belief_stream import BeliefStream, BeliefUpdate, play
from .loading import load
from .media_affectverse import probe_media


def _table_row(update: BeliefUpdate, labels: list[str]) -> str:
    best = max(update.probabilities, key=update.probabilities.get)
    cells = "".join(f"{update.probabilities[label]:>{max(8, len(label) + 1)}.3f}" for label in labels)
    bar = "#" * round(20 * update.probabilities[best])
    return f"{update.seconds:7.1f}s{cells}   {best:<10} {bar}"


def plot_trajectory(times: list[float], labels: list[str], probabilities: list[list[float]], path: str, title: str):
    """The label probabilities over time as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4))
    rows = np.asarray(probabilities)
    for i, label in enumerate(labels):
        axis.plot(times, rows[:, i], marker="o", markersize=3, label=label)
    axis.set_xlabel("seconds observed")
    axis.set_ylabel("probability")
    axis.set_ylim(0, 1)
    axis.set_title(title)
    axis.legend(loc="upper left", fontsize=8, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(description="Play a file as a belief stream: probabilities as time advances.")
    parser.add_argument("clip", help="a video or audio file")
    parser.add_argument("--model", default="tiny", help="a trained adapter folder, a checkpoint, or 'tiny'")
    parser.add_argument("--chunk-seconds", type=float, default=2.0, help="seconds per update (the Omni chunk: 2)")
    parser.add_argument("--task", default="emotion", choices=("emotion", "sentiment"))
    parser.add_argument("--labels", nargs="+", default=None, help="the emotion label set (default MER's six)")
    parser.add_argument("--subtitle", default=None)
    parser.add_argument("--output", default=None, help="folder for trajectory.json / .png (default: <clip>.stream)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m modeling_affectverse.stream clip.mp4`: play a file as a stream, print the label probabilities as
    time advances, write the trajectory (JSON) and its plot (PNG)."""
    import resource
    import time as clock

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.chunk_seconds > 0:
        parser.error("--chunk-seconds must be positive")
    info = probe_media(args.clip)
    model, processor = load(args.model)
    stream = BeliefStream(
        model,
        processor,
        task=args.task,
        label_set=args.labels,
        subtitle=args.subtitle,
        video=info.has_video,
        audio=info.has_audio,
    )
    labels = stream.labels
    print(f"{args.clip}: {'video' if info.has_video else ''}{' + ' if info.has_video and info.has_audio else ''}"
          f"{'audio' if info.has_audio else ''}, an update every {args.chunk_seconds:g} s")  # fmt: skip
    print(f"{'time':>8}" + "".join(f"{label:>{max(8, len(label) + 1)}}" for label in labels) + "   best")
    times, rows, tokens, latency = [], [], [], []
    size, rate = processor.frame_size, processor.feature_extractor.sampling_rate
    for frames, wave in play(args.clip, stream.fps, size, rate, args.chunk_seconds):
        if frames is None and wave is None:
            continue
        started = clock.perf_counter()
        update = stream.push(frames, wave)
        latency.append(clock.perf_counter() - started)
        times.append(update.seconds)
        rows.append([update.probabilities[label] for label in labels])
        tokens.append(update.prefilled_media_tokens)
        print(_table_row(update, labels), flush=True)
    stream.close()
    if not rows:
        print(f"{args.clip}: no frames and no audio decoded", file=sys.stderr)
        return 1
    output = args.output or os.path.splitext(args.clip)[0] + ".stream"
    os.makedirs(output, exist_ok=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {
        "clip": os.path.abspath(args.clip),
        "model": args.model,
        "chunk_seconds": args.chunk_seconds,
        "labels": labels,
        "seconds": times,
        "probabilities": rows,
        "prefilled_media_tokens": tokens,
        "update_seconds": latency,
        "peak_rss_mib": peak_mib,
    }
    with open(os.path.join(output, "trajectory.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    plot_trajectory(times, labels, rows, os.path.join(output, "trajectory.png"), os.path.basename(args.clip))
    print(f"{len(rows)} updates; trajectory: {output}/trajectory.json and trajectory.png; peak RSS {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["build_parser", "main", "plot_trajectory"]
