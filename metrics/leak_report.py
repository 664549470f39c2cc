"""How much of the future a partial observation shows: the paper's embedded split against the clip split.

    python -m metrics.leak_report --manifest data/demo/emotion.jsonl --output outputs/leak \\
        [--model outputs/demo-embedded --model outputs/demo]

1. Encoders (the tiny random model, untrained, unless `--encoders` names an adapter folder): for each clip (its own
   soundtrack interleaved, A+V) and rho, the past tokens the embedded split takes (the whole clip encoded, the first
   ceil(rho N) audio tokens and floor(rho P) video patches of the merged embeddings) against the tokens of the clip cut
   at the same point (`observed_prefix`) and encoded alone: their relative difference ||split - cut|| / ||cut|| per
   modality, mean over clips.
2. Linear probes: logistic regression on the mean-pooled past tokens of each modality, fit on the train split, scored
   on the test split, predicting the clip's final label: what the past tokens tell about the future, embedded vs cut.
3. Each `--model` (an adapter folder from `training/sft.py`): closed-set accuracy on the test split at each rho
   under the embedded split (the whole clip in, `keep_ratio` in `forward`; only a model with `ewm_split="embedded"`
   takes it) and on cut clips (the runner's `--keep-ratios`), with the share of answers that name the expression
   the clip starts in (read back from the demo's reasoning text).

Writes `leak.json` and prints a table. Random encoders are enough for parts 1-2: the leak is the attention pattern
(bidirectional within the Omni audio encoder's 2-s chunks), not what the weights learned.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.data.demo_data import CUES
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.ewm import AUDIO, VIDEO
from modeling_affectverse.ewm_layers import past_length
from modeling_affectverse.loading import load
from modeling_affectverse.scoring_affectverse import closed_set_probabilities

NAMES = {VIDEO: "video", AUDIO: "audio"}


def start_expression(row: dict) -> str | None:
    """The expression a demo clip starts in, read back from its reasoning text (`demo_data.describe_clip`)."""
    text = row.get("reasoning") or ""
    return next(
        (name for name, (face, voice) in CUES.items() if text.startswith(f"The clip starts with {face} and {voice}.")),
        None,
    )


@torch.no_grad()
def stream_tokens(model, batch: dict) -> list[dict[int, torch.Tensor]]:
    """Per sample of `batch`, each modality's merged input embeddings `(N, D)` in time order (what the EWM reads)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    captured = {}
    handle = base.ewm.register_forward_pre_hook(lambda module, args: captured.update(args=args))
    try:
        base.imagine(**batch)
    finally:
        handle.remove()
    hidden, video, audio = captured["args"][:3]
    return [{VIDEO: hidden[b][video[b]], AUDIO: hidden[b][audio[b]]} for b in range(hidden.shape[0])]


def encoder_leak(model, processor, rows: list[dict], ratios: list[float], batch_size: int = 8) -> dict:
    """Parts 1-2: per rho and modality, the split's past tokens against the cut clip's, and the probes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    whole_collator = AffectVerseCollator.for_prediction(processor)
    vp = processor.video_processor
    patch = (processor.frame_size // vp.patch_size) ** 2 // vp.merge_size**2  # video tokens per temporal patch
    features = {r: {m: {"split": [], "cut": []} for m in NAMES} for r in ratios}
    differences = {r: {m: [] for m in NAMES} for r in ratios}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        whole = stream_tokens(model, whole_collator(chunk))
        for ratio in ratios:
            cut = stream_tokens(model, AffectVerseCollator.for_prediction(processor, keep_ratio=ratio)(chunk))
            for full, observed in zip(whole, cut, strict=True):
                for modality in NAMES:
                    tokens = full[modality]
                    split = tokens[: past_length(len(tokens), ratio, patch if modality == VIDEO else 1)]
                    count = min(len(split), len(observed[modality]))
                    a, b = split[:count].float(), observed[modality][:count].float()
                    differences[ratio][modality].append(float((a - b).norm() / b.norm().clamp(min=1e-12)))
                    features[ratio][modality]["split"].append(split.float().mean(0).numpy())
                    features[ratio][modality]["cut"].append(observed[modality].float().mean(0).numpy())
    labels = np.array([row["label"] for row in rows])
    train = np.array([row["split"] == "train" for row in rows])
    report = {}
    for ratio in ratios:
        for modality, name in NAMES.items():
            entry = {"relative_difference": float(np.mean(differences[ratio][modality]))}
            for kind in ("split", "cut"):
                x = np.stack(features[ratio][modality][kind])
                probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
                probe.fit(x[train], labels[train])
                entry[f"probe_{kind}"] = float(probe.score(x[~train], labels[~train]))
            report[f"rho_{ratio:g}/{name}"] = entry
    return report


@torch.no_grad()
def model_accuracy(folder: str, rows: list[dict], ratios: list[float], batch_size: int = 8) -> dict:
    """Part 3: closed-set accuracy of a trained adapter under the embedded split and on cut clips, per rho, and how
    often it names the clip's start expression."""
    from metrics.evaluation import predict_batch

    model, processor = load(folder)
    model.eval()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    candidates = rows[0]["label_set"]
    report = {"ewm_split": base.config.ewm_split}
    for ratio in ratios:
        protocols = {"cut": AffectVerseCollator.for_prediction(processor, keep_ratio=ratio)}
        if base.config.ewm_split == "embedded" and ratio < 1:
            protocols["embedded"] = AffectVerseCollator.for_prediction(
                processor, keep_ratio=ratio, with_future=True, with_answer=True
            )
        for name, collator in protocols.items():
            answers = []
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                if name == "cut":
                    answers += [r["prediction"] for r in predict_batch(model, collator, chunk, "closed_set")]
                else:  # one full forward per candidate: the split happens inside forward (no cache to continue)
                    _, probabilities = closed_set_probabilities(
                        model, collator.collate_candidates(chunk, candidates), len(candidates)
                    )
                    answers += [candidates[int(p.argmax())] for p in probabilities]
            right = [a == row["label"] for a, row in zip(answers, rows, strict=True)]
            starts = [a == start_expression(row) for a, row in zip(answers, rows, strict=True)]
            report[f"rho_{ratio:g}/{name}"] = {
                "accuracy": float(np.mean(right)),
                "names_the_start": float(np.mean(starts)),
            }
    return report


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="data/demo/emotion.jsonl")
    parser.add_argument("--output", default="outputs/leak")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.7, 0.5, 0.3])
    parser.add_argument("--encoders", default="tiny", help="model whose encoders parts 1-2 use (default: tiny, random)")
    parser.add_argument("--model", action="append", default=[], help="adapter folder(s) to score (part 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    rows = list(load_manifest(args.manifest))
    model, processor = load(args.encoders)
    model.eval()
    report = {
        "manifest": args.manifest,
        "encoders": args.encoders,
        "clips": len(rows),
        "encoder_leak": encoder_leak(model, processor, rows, args.ratios),
    }
    held_out = [row for row in rows if row["split"] == "test"]
    report["models"] = {folder: model_accuracy(folder, held_out, [1.0, *args.ratios]) for folder in args.model}
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "leak.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print("| rho / modality | relative difference split vs cut | probe on the split's past | probe on the cut clip |")
    print("|---|---|---|---|")
    for key, entry in report["encoder_leak"].items():
        print(f"| {key} | {entry['relative_difference']:.3f} | {entry['probe_split']:.3f} | {entry['probe_cut']:.3f} |")
    for folder, entries in report["models"].items():
        print(f"\n{folder} (ewm_split={entries.pop('ewm_split')}): accuracy / names the start expression")
        for key, entry in entries.items():
            print(f"  {key}: {entry['accuracy']:.3f} / {entry['names_the_start']:.3f}")
    print(f"wrote {os.path.join(args.output, 'leak.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
