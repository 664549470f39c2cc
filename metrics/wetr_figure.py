"""WETR's Fig. 3: which visual patches Noise-suppressed Token Selection keeps, over a clip's frames.

    python -m metrics.wetr_figure --model outputs/demo --video data/demo/clips/demo_0005.mp4 \\
        --p-visual 0.03 0.1 0.3 --wetr-interval 2 --output outputs/wetr_fig3.png

One row per visual keep ratio, one column per temporal token step (at most `--columns`, evenly spaced): the step's
first frame, the dropped patches occluded in grey, each kept patch outlined with a colour for its gamma (STR's
weight: blue below 1, red above). Next to the image, `<output>.json` holds, per keep ratio and trigger layer, the
kept input positions and their gamma (`wetr_record`) and the kept patch grid. The other WETR options (`--wetr-*`)
are the evaluation runner's. `--model tiny` draws the embedded random model: the figure then shows the mechanism
(ceil(p x n) patches per trigger, where they sit), not which regions a trained model finds emotional.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

from metrics.evaluation import add_wetr_arguments, use_wetr_queries, wetr_config
from modeling_affectverse.data.collator import AffectVerseCollator, MediaOptions
from modeling_affectverse.loading import load
from modeling_affectverse.media_affectverse import decode_clip
from modeling_affectverse.tiny import MER_LABELS
from modeling_affectverse.wetr import kept_visual_grid

CELL = 24  # display pixels per merged patch


def refine(model, collator: AffectVerseCollator, row: dict, config) -> tuple[list[dict], dict]:
    """One forward of `row` with WETR (`config`) recording: `(wetr_record, batch)`."""
    batch = collator([row])
    if not batch.get("input_ids", torch.empty(0)).numel():
        raise ValueError(f"{row['video']}: the clip could not be used ({dict(collator.skipped)})")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.enable_wetr(config, record=True)
    try:
        with torch.no_grad():
            model(**{k: v for k, v in batch.items() if k != "labels"})
        return base.wetr_record, batch
    finally:
        base.disable_wetr()


def step_frames(frames: np.ndarray, steps: int, temporal_patch: int) -> np.ndarray:
    """The first frame of each temporal token step `(steps, H, W, 3)` (a short last step repeats the last frame,
    as the processor pads it). Where the processor lowered the frame rate to fit its token budget the steps no
    longer cover `temporal_patch` decoded frames each: then evenly spaced frames stand in for them."""
    if math.ceil(len(frames) / temporal_patch) != steps:
        return frames[np.linspace(0, len(frames) - 1, steps).round().astype(int)]
    return frames[np.minimum(np.arange(steps) * temporal_patch, len(frames) - 1)]


def draw(frames: np.ndarray, rows: list[tuple[str, torch.Tensor, torch.Tensor]], path: str, columns: int) -> None:
    """Save the figure: `frames` `(T, H, W, 3)` one per token step; `rows`: (label, kept (T, h, w), gamma (T, h, w))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    steps, height, width = rows[0][1].shape
    shown = np.unique(np.linspace(0, steps - 1, min(columns, steps)).round().astype(int))
    figure, axes = plt.subplots(len(rows), len(shown), figsize=(1.6 * len(shown), 1.7 * len(rows)), squeeze=False)
    colours = plt.get_cmap("coolwarm")
    for r, (label, kept, gamma) in enumerate(rows):
        kept, gamma = kept.numpy(), gamma.numpy()
        for c, step in enumerate(shown):
            axis = axes[r][c]
            image = np.asarray(Image.fromarray(frames[step]).resize((width * CELL, height * CELL)), dtype=np.float32)
            cells = kept[step].repeat(CELL, 0).repeat(CELL, 1)
            image[~cells] = 0.25 * image[~cells] + 0.75 * 128  # occluded: what NTS dropped
            axis.imshow(image.astype(np.uint8))
            for y, x in zip(*np.nonzero(kept[step]), strict=True):
                shade = colours(float(np.clip((gamma[step, y, x] - 1) / 4 + 0.5, 0, 1)))  # gamma 1 -> white
                axis.add_patch(
                    Rectangle((x * CELL - 0.5, y * CELL - 0.5), CELL, CELL, fill=False, lw=1.5, edgecolor=shade)
                )
            axis.set_xticks([]), axis.set_yticks([])
            if r == 0:
                axis.set_title(f"step {step}", fontsize=8)
            if c == 0:
                axis.set_ylabel(label, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(args: argparse.Namespace) -> dict:
    model, processor = load(args.model)
    model.eval()
    if args.frame_size:
        processor.frame_size = args.frame_size
    use_wetr_queries(processor, args)
    collator = AffectVerseCollator.for_prediction(processor, wetr_queries=True, media=MediaOptions(fps=args.fps))
    audio = None if args.audio == "none" else (args.audio or args.video)
    row = {
        "id": "figure",
        "video": args.video,
        "audio": audio,
        "subtitle": args.subtitle,
        "task": "emotion",
        "label_set": list(MER_LABELS),
        "split": "test",
    }
    media = decode_clip(
        args.video, None, fps=collator.media.fps, size=processor.frame_size, max_frames=collator.media.max_frames
    )
    vision = model.config.vision_config
    rows, saved = [], {}
    for p_visual in args.p_visual:
        record, batch = refine(model, collator, row, wetr_config(args, p_visual=p_visual))
        if not 0 <= args.trigger < len(record):
            raise ValueError(
                f"--trigger {args.trigger}: this model triggers at layers {[e['layer'] for e in record]}"
                f" (indices 0-{len(record) - 1})"
            )
        entry = record[args.trigger]
        kept, gamma = kept_visual_grid(
            entry, batch["wetr_roles"], batch["video_grid_thw"][0], vision.spatial_merge_size
        )
        rows.append((f"p_v = {p_visual:g}\nkept {int(kept.sum())}/{kept.numel()}", kept, gamma))
        saved[f"{p_visual:g}"] = {
            "trigger_layers": [e["layer"] for e in record],
            "kept_positions": [e["kept_index"][0][e["kept_index"][0] >= 0].tolist() for e in record],
            "gamma": [e["gamma"][0][e["kept_index"][0] >= 0].float().tolist() for e in record],
            "figure_layer": entry["layer"],
            "kept_patches": kept.int().tolist(),
        }
    frames = step_frames(media.video.frames, rows[0][1].shape[0], vision.temporal_patch_size)
    draw(frames, rows, args.output, args.columns)
    with open(os.path.splitext(args.output)[0] + ".json", "w", encoding="utf-8") as handle:
        json.dump(saved, handle)
    return saved


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, an adapter folder, or a checkpoint folder / hub id")
    parser.add_argument("--video", required=True)
    parser.add_argument("--audio", default=None, help="default: the video's own track; 'none': silent")
    parser.add_argument("--subtitle", default=None)
    parser.add_argument("--p-visual", nargs="+", type=float, default=[0.03, 0.1, 0.3], help="one row each")
    parser.add_argument("--trigger", type=int, default=0, help="which trigger layer to draw (0: the first)")
    parser.add_argument("--frame-size", type=int, default=None, help="override the processor's frame size (px)")
    parser.add_argument("--fps", type=float, default=3.0)
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--output", required=True, help="the .png; its .json is written next to it")
    add_wetr_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(not 0 < p <= 1 for p in args.p_visual):
        parser.error("--p-visual values must lie in (0, 1]")
    saved = run(args)
    for p_visual, entry in saved.items():
        kept = np.asarray(entry["kept_patches"])
        print(f"p_v = {p_visual}: layer {entry['figure_layer']} kept {int(kept.sum())} of {kept.size} patches")
    print(f"wrote {args.output} and {os.path.splitext(args.output)[0]}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
