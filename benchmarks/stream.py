"""9. stream: a belief trajectory through the belief stream against one-shot scorings of the growing prefix.

On the mid-size model, a 20-s audio-in-video clip: 10 updates of 2 s through one `BeliefStream` against 10 one-shot
closed-set scorings of the clip cut at each update time (processed and scored from scratch), interleaved; the
per-update latency of each as the clip grows (one side's cost should stay flat, the other's grows with the prefix);
the tokens each prefills; the stream with its candidates scored in the suffix's prefill against continued from a
repeated cache; and the stream command's peak RSS on written files of growing length (each in its own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.inputs import midsize_pair
from benchmarks.timing import interleaved
from modeling_affectverse.media_affectverse import AudioClip, ClipMedia, VideoClip
from modeling_affectverse.processing_affectverse import task_question
from modeling_affectverse.scoring_affectverse import candidate_log_likelihoods, candidate_token_ids
from modeling_affectverse.tiny import MER_LABELS, synthetic_clip

HERE = os.path.dirname(os.path.abspath(__file__))
SECONDS, UPDATES = 20.0, 10


def stream_section(repeats: int) -> dict:
    model, _, processor, _ = midsize_pair(seconds=SECONDS, frame_size=112)
    model.eval()
    frames, wave = synthetic_clip(SECONDS, size=112, seed=0)
    rate, fps = processor.feature_extractor.sampling_rate, processor.fps
    step_frames, step_samples = len(frames) // UPDATES, len(wave) // UPDATES
    prompt = processor.build_prompt(task_question("emotion", list(MER_LABELS)), video=True)
    ids = candidate_token_ids(processor.tokenizer, list(MER_LABELS))
    stream_latency, one_shot_latency = [], []
    tokens = {"stream": [], "stream_media": [], "one_shot": []}  # prefilled per update (candidate rows apart)

    def streamed(record: list | None = None, tree: bool = True):
        stream = model.belief_stream(processor)
        if not tree:  # the candidates continued from a cache repeated per candidate (the fallback path)
            stream.tree = None
        for k in range(1, UPDATES + 1):
            start = time.perf_counter()
            chunk = slice((k - 1) * step_frames, k * step_frames), slice((k - 1) * step_samples, k * step_samples)
            update = stream.push(frames[chunk[0]], wave[chunk[1]])
            if record is not None:
                record.append(time.perf_counter() - start)
                tokens["stream"].append(update.prefilled_tokens)
                tokens["stream_media"].append(update.prefilled_media_tokens)
        stream.close()

    def one_shot(record: list | None = None):
        for k in range(1, UPDATES + 1):
            start = time.perf_counter()
            cut = ClipMedia(
                VideoClip(frames[: k * step_frames], fps, torch.arange(k * step_frames).numpy() / fps, k * 2.0),
                AudioClip(wave[: k * step_samples], rate, rate, k * 2.0),
                True,
            )
            inputs = dict(processor.from_clips([prompt], [cut], max_length=None))
            candidate_log_likelihoods(model, inputs, ids)
            if record is not None:
                record.append(time.perf_counter() - start)
                tokens["one_shot"].append(int(inputs["input_ids"].shape[1]))

    streamed(stream_latency)  # the curves: one pass each, after which the timed passes run interleaved
    one_shot(one_shot_latency)
    seconds_one_shot, seconds_stream = interleaved(one_shot, streamed, repeats)
    seconds_tree, seconds_repeated = interleaved(streamed, lambda: streamed(tree=False), repeats)
    times = [2.0 * k for k in range(1, UPDATES + 1)]
    plot(times, stream_latency, one_shot_latency, os.path.join(HERE, "stream.png"))
    return {
        "clip_seconds": SECONDS,
        "updates": UPDATES,
        "trajectory_seconds": {"stream": seconds_stream, "one_shot": seconds_one_shot},
        "time_ratio": seconds_stream / seconds_one_shot,
        # the work each side does: tokens prefilled per update, and their ratio over the trajectory (the time ratio
        # is higher: the stream's calls are short, each attends to the whole cache, and both sides pay the EWM on
        # all media and the per-call overhead at every update)
        "prefilled_tokens": tokens,
        "candidates_in_the_prefill": {  # tree rows in the suffix's call / a second call on a repeated cache
            "trajectory_seconds": {"tree": seconds_tree, "repeated_cache": seconds_repeated},
            "time_ratio": seconds_tree / seconds_repeated,
        },
        "prefilled_token_ratio": sum(tokens["stream"]) / sum(tokens["one_shot"]),
        "latency_vs_clip_seconds": {"seconds": times, "stream": stream_latency, "one_shot": one_shot_latency},
        "latency_growth": {  # last update's latency over the first's
            "stream": stream_latency[-1] / stream_latency[0],
            "one_shot": one_shot_latency[-1] / one_shot_latency[0],
        },
        "peak_rss_mib_vs_clip_seconds": command_rss([15.0, 30.0, 60.0]),
    }


def command_rss(lengths: list[float]) -> dict:
    """`python -m modeling_affectverse.stream` (tiny model, 5-s updates) on written files of each length, each in
    its own process: the peak RSS it reports."""
    from tests.media_fixtures import write_constant_video

    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for seconds in lengths:
            path = os.path.join(folder, f"clip{seconds:g}.mp4")
            write_constant_video(path, seconds, audio_seconds=seconds)
            result_dir = os.path.join(folder, f"out{seconds:g}")
            command = [sys.executable, "-m", "modeling_affectverse.stream", path, "--chunk-seconds", "5", "--output",
                       result_dir]  # fmt: skip
            subprocess.run(command, check=True, capture_output=True)
            with open(os.path.join(result_dir, "trajectory.json"), encoding="utf-8") as handle:
                out[f"{seconds:g}"] = json.load(handle)["peak_rss_mib"]
    return out


def plot(times, stream_latency, one_shot_latency, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(times, one_shot_latency, marker="o", label="one-shot scoring of the prefix")
    axis.plot(times, stream_latency, marker="o", label="belief stream update")
    axis.set_xlabel("seconds of clip observed")
    axis.set_ylabel("seconds per update")
    axis.set_ylim(bottom=0)
    axis.legend()
    axis.set_title("Per-update latency, mid-size CPU model")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
