"""Benchmark runner: a model on manifests, under the paper's modality settings and keep-ratio protocol.

    python -m metrics.evaluation --model outputs/demo --manifest data/demo/emotion.jsonl --output outputs/bench \\
        --modalities AVT AT VT --keep-ratios 1.0 0.7 0.5 0.3 0.1

`--model` is `tiny` (the embedded random model), an adapter folder from `training/sft.py` (its base is read from
`adapter_config.json`), or an AffectVerse checkpoint folder / hub id. For every (manifest, modality setting, keep
ratio) the test split is run in batches (free generation, or `--scoring closed_set` for label sets), and each
prediction is appended to `predictions.jsonl` as soon as its batch ends. A run that is interrupted resumes from that
file: finished predictions are not redone. At the end the metric modules in `metrics/` score every group, under
their own names, into `results.json`, `results.md` (Table 1: modality settings at keep ratio 1; Table 2: keep
ratios under A+V+T) and `keep_ratio.png`.

Modality settings: AVT = video + its audio + subtitle; AT = the audio only (+ subtitle); VT = the video only
(+ subtitle). Keep ratio rho (Table 2): only the first rho of each clip's frames and audio is observed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections import defaultdict

import evaluate
import torch
from tqdm.auto import tqdm

from modeling_affectverse.data.collator import AffectVerseCollator, MediaOptions
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.loading import load
from modeling_affectverse.processing_affectverse import SENTIMENT_ANSWERS, extract_answer
from modeling_affectverse.scoring_affectverse import candidate_log_likelihoods, candidate_token_ids
from modeling_affectverse.wetr import PROXIES, WETRConfig

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))
MODALITIES = {"AVT": "A+V+T", "AT": "A+T", "VT": "V+T"}
# the score each table shows per task, under its metric module's own name
PRIMARY = {"emotion": "weighted_f1", "sentiment": "non0_f1", "open_vocabulary": "f_score"}


def with_modalities(row: dict, setting: str) -> dict:
    """The row as a modality setting sees it: AT keeps the audio (its own file or the video's track), VT the video.

    A `segment` indexes into the video file, so AT drops it with the video (no converter pairs a segment with the
    video's own track: IEMOCAP's audio is a separate utterance file).
    """
    row = dict(row)
    if setting == "AT":
        row["video"], row["segment"] = None, None
    elif setting == "VT":
        row["audio"] = None
    return row


def read_predictions(path: str) -> list[dict]:
    """Predictions written so far. A last line cut by an interruption is dropped (and the file trimmed to match)."""
    if not os.path.isfile(path):
        return []
    records, good_bytes = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_bytes += len(line)
    if good_bytes != os.path.getsize(path):
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return records


def _key(record: dict) -> tuple:
    return record["dataset"], record["modality"], float(record["keep_ratio"]), record["id"]


REASONING_NEW_TOKENS = 256  # room for the cues and the tagged answer (the demo's targets are ~120 tokens)


@torch.no_grad()
def predict_batch(model, collator: AffectVerseCollator, rows: list[dict], scoring: str) -> list[dict]:
    """One result per row, in order, for rows of one task: generated text, or the best candidate with the
    distribution; a row the collator could not use (unreadable media, ...) gets `{"skipped": reason, "error": ...}`."""
    task = rows[0]["task"]
    inputs = collator(rows)  # prompts ending at the assistant header, for the rows that could be used
    results: list[dict] = [
        {"prediction": None, "skipped": reason, "error": message} for _, reason, message in collator.last_skipped
    ]
    skipped = iter(results)
    kept = collator.last_kept
    if not kept:
        return results
    if scoring == "closed_set" and task in ("emotion", "sentiment"):
        candidates = rows[0]["label_set"] if task == "emotion" else list(SENTIMENT_ANSWERS)
        ids = candidate_token_ids(collator.processor.tokenizer, candidates)
        probabilities = candidate_log_likelihoods(model, inputs, ids).softmax(dim=-1)  # one prefill per clip
        predicted = [
            {"prediction": candidates[int(p.argmax())], "probabilities": dict(zip(candidates, p.tolist(), strict=True))}
            for p in probabilities
        ]
    elif collator.answer_format == "reasoning":  # <think>...</think><answer>...</answer>: the answer is extracted
        length = inputs["input_ids"].shape[1]
        generated = model.generate(**inputs, max_new_tokens=REASONING_NEW_TOKENS, do_sample=False)
        texts = collator.processor.tokenizer.batch_decode(generated[:, length:], skip_special_tokens=True)
        predicted = []
        for text in texts:  # a malformed output (no tags, cut before </answer>) is unmatched, never guessed at
            answer = extract_answer(text)
            predicted.append({"prediction": answer or "", "generated_text": text, "malformed": answer is None})
    else:
        length = inputs["input_ids"].shape[1]
        generated = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        texts = collator.processor.tokenizer.batch_decode(generated[:, length:], skip_special_tokens=True)
        predicted = [{"prediction": text.strip()} for text in texts]
    by_row = dict(zip(kept, predicted, strict=True))
    return [by_row[i] if i in by_row else next(skipped) for i in range(len(rows))]


def run(args) -> dict:
    os.makedirs(args.output, exist_ok=True)
    predictions_path = os.path.join(args.output, "predictions.jsonl")
    done = {_key(r) for r in read_predictions(predictions_path)}
    model, processor = load(args.model)
    model.eval()
    wetr = getattr(args, "wetr", False)
    if wetr:  # the same protocol with WETR's token refinement inside the language model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.enable_wetr(wetr_config(args))
        use_wetr_queries(processor, args)
    new = 0
    media = MediaOptions(store={}) if getattr(args, "cache_media", False) else None  # one decode per clip
    with open(predictions_path, "a", encoding="utf-8") as out:
        for manifest in args.manifest:
            rows = [r for r in load_manifest(manifest) if r["split"] == args.split]  # media paths resolved
            for setting in args.modalities:
                for ratio in args.keep_ratios:
                    collator = AffectVerseCollator.for_prediction(
                        processor, keep_ratio=ratio, answer_format=args.answer_format, wetr_queries=wetr, media=media
                    )
                    todo = [r for r in rows if (r["dataset"], setting, float(ratio), r["id"]) not in done]
                    desc = f"{os.path.basename(manifest)} {MODALITIES[setting]} rho={ratio:g}"
                    for start in tqdm(range(0, len(todo), args.batch_size), desc=desc, disable=not todo):
                        if args.max_predictions is not None and new >= args.max_predictions:
                            return {"stopped_after": new}
                        batch = todo[start : start + args.batch_size]
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")  # budget fitting notes, once per clip: too chatty here
                            results = predict_batch(
                                model, collator, [with_modalities(r, setting) for r in batch], args.scoring
                            )
                        for row, result in zip(batch, results, strict=True):
                            record = {
                                "dataset": row["dataset"],
                                "modality": setting,
                                "keep_ratio": float(ratio),
                                "id": row["id"],
                                "task": row["task"],
                                "reference": row["label"],
                                "label_set": row["label_set"],
                                **result,
                            }
                            out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        out.flush()
                        new += len(batch)
    results = score(read_predictions(predictions_path))
    write_reports(results, args.output)
    return results


def score(records: list[dict]) -> dict:
    """Every metric of each (dataset, modality, keep ratio) group: {dataset: {modality: {rho: {metric: value}}}}."""
    groups = defaultdict(list)
    for record in records:
        groups[(record["dataset"], record["modality"], f"{float(record['keep_ratio']):g}")].append(record)
    results: dict = {}
    for (dataset, modality, ratio), items in sorted(groups.items()):
        items.sort(key=lambda r: r["id"])
        task = items[0]["task"]
        skipped = [[r["id"], r["skipped"]] for r in items if r.get("skipped")]  # unusable media: recorded, not scored
        items = [r for r in items if not r.get("skipped")]
        if not items:
            results.setdefault(dataset, {}).setdefault(modality, {})[ratio] = {
                "task": task,
                "skipped_rows": len(skipped),
                "skipped_ids": skipped,
            }
            continue
        predictions = [r["prediction"] for r in items]
        references = [r["reference"] for r in items]
        if task == "emotion":
            scores = _metric("emotion_classification").compute(
                predictions=predictions, references=references, label_set=items[0]["label_set"]
            )
            hit = _metric("emotion_hit_rate").compute(predictions=predictions, references=references)
            scores["hit_rate"] = hit["hit_rate"]
        elif task == "sentiment":
            scores = _metric("sentiment_polarity").compute(predictions=predictions, references=references)
        else:
            scores = _metric("open_vocabulary_emotion").compute(predictions=predictions, references=references)
        scores["task"] = task
        scores["skipped_rows"], scores["skipped_ids"] = len(skipped), skipped
        results.setdefault(dataset, {}).setdefault(modality, {})[ratio] = scores
    return results


_LOADED: dict = {}


def _metric(name: str):
    if name not in _LOADED:
        _LOADED[name] = evaluate.load(os.path.join(METRICS_DIR, name))
    return _LOADED[name]


def _cell(scores: dict | None) -> str:
    value = None if scores is None else scores.get(PRIMARY[scores["task"]])
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def render_tables(results: dict) -> str:
    """Markdown shaped like the paper's Table 1 (settings x datasets, rho = 1) and Table 2 (rho x datasets, AVT)."""
    datasets = sorted(results)
    header = (
        "| | "
        + " | ".join(f"{d} ({PRIMARY[next(iter(next(iter(results[d].values())).values()))['task']]})" for d in datasets)
        + " |"
    )
    rule = "|---" * (len(datasets) + 1) + "|"
    lines = ["## Table 1: modality settings (keep ratio 1)", "", header, rule]
    for setting, label in MODALITIES.items():
        if any(setting in results[d] for d in datasets):
            lines.append(
                f"| {label} | " + " | ".join(_cell(results[d].get(setting, {}).get("1")) for d in datasets) + " |"
            )
    ratios = sorted({r for d in datasets for r in results[d].get("AVT", {})}, key=float, reverse=True)
    lines += ["", "## Table 2: keep ratio (A+V+T; only the first rho of each clip observed)", "", header, rule]
    for ratio in ratios:
        lines.append(
            f"| rho = {ratio} | " + " | ".join(_cell(results[d].get("AVT", {}).get(ratio)) for d in datasets) + " |"
        )
    return "\n".join(lines) + "\n\nScores x 100; each column's metric is named in its header (metrics/ modules).\n"


def write_reports(results: dict, output: str) -> None:
    with open(os.path.join(output, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
    with open(os.path.join(output, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(render_tables(results))
    plot(results, os.path.join(output, "keep_ratio.png"))


def plot(results: dict, path: str) -> None:
    """Primary score versus keep ratio, one line per (dataset, modality setting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for dataset in sorted(results):
        for setting, by_ratio in sorted(results[dataset].items()):
            ratios = sorted(by_ratio, key=float)
            values = [by_ratio[r].get(PRIMARY[by_ratio[r]["task"]]) for r in ratios]
            axis.plot(
                [float(r) for r in ratios],
                [float("nan") if v is None else v for v in values],
                marker="o",
                label=f"{dataset} {MODALITIES[setting]}",
            )
    axis.set_xlabel("keep ratio (fraction of each clip observed)")
    axis.set_ylabel("primary score")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def add_wetr_arguments(parser: argparse.ArgumentParser) -> None:
    """WETR's settings (paper defaults) and the switches of its ablations (WETR Tables 2, 3 and 6)."""
    group = parser.add_argument_group("WETR")
    group.add_argument("--wetr-interval", type=int, default=9, help="trigger interval n_r")
    group.add_argument("--wetr-delta", type=float, default=4.0, help="STR's strength delta")
    group.add_argument("--wetr-p-visual", type=float, default=0.03)
    group.add_argument("--wetr-p-audio", type=float, default=0.03)
    group.add_argument("--wetr-p-text", type=float, default=0.2)
    group.add_argument("--wetr-proxy", choices=list(PROXIES), default="contrastive", help="NTS scoring proxy")
    group.add_argument("--wetr-no-nts", action="store_true", help="keep every token (STR only)")
    group.add_argument("--wetr-no-str", action="store_true", help="gamma = 1 (NTS only)")
    group.add_argument("--wetr-no-anchors", action="store_true", help="STR without anchor protection")
    group.add_argument("--wetr-query-pos", default=None, help="the emotion-seeking span (default: the processor's)")
    group.add_argument("--wetr-query-neg", default=None, help="the emotion-irrelevant span (default: the processor's)")


def use_wetr_queries(processor, args: argparse.Namespace) -> None:
    """Give `processor` the query spans named by `--wetr-query-pos/-neg` (each kept where not given)."""
    if args.wetr_query_pos is not None or args.wetr_query_neg is not None:
        processor.set_wetr_queries(
            args.wetr_query_pos or processor.wetr_query_pos, args.wetr_query_neg or processor.wetr_query_neg
        )


def wetr_config(args: argparse.Namespace, **overrides) -> WETRConfig:
    """The `WETRConfig` that `add_wetr_arguments`' options describe (`overrides` replace fields)."""
    fields = dict(
        trigger_interval=args.wetr_interval,
        delta=args.wetr_delta,
        p_visual=args.wetr_p_visual,
        p_audio=args.wetr_p_audio,
        p_text=args.wetr_p_text,
        proxy=args.wetr_proxy,
        select=not args.wetr_no_nts,
        reweight=not args.wetr_no_str,
        anchors=not args.wetr_no_anchors,
    )
    return WETRConfig(**{**fields, **overrides})


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, an adapter folder, or a checkpoint folder / hub id")
    parser.add_argument("--manifest", nargs="+", required=True, help="manifest(s) to evaluate")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", required=True, help="folder for predictions.jsonl and the reports")
    parser.add_argument("--modalities", nargs="+", default=["AVT"], choices=sorted(MODALITIES))
    parser.add_argument("--keep-ratios", nargs="+", type=float, default=[1.0])
    parser.add_argument("--scoring", choices=["generate", "closed_set"], default="generate")
    parser.add_argument("--wetr", action="store_true", help="score with WETR's token refinement")
    add_wetr_arguments(parser)
    parser.add_argument(
        "--answer-format",
        choices=["label", "reasoning"],
        default="label",
        help="reasoning: prompts ask for <think>...</think><answer>...</answer> and the answer is "
        "extracted (generate scoring only); malformed outputs count as unmatched",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-predictions", type=int, default=None, help="stop after this many new predictions")
    parser.add_argument(
        "--cache-media",
        action="store_true",
        help="decode each clip once for all modality settings and keep ratios (holds the split's decoded media in "
        "memory: for small sets such as the demo's)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(not 0 < r <= 1 for r in args.keep_ratios):
        parser.error("--keep-ratios must lie in (0, 1]")
    if args.answer_format == "reasoning" and args.scoring == "closed_set":
        parser.error("--answer-format reasoning needs --scoring generate: a reasoning answer is not a closed choice")
    results = run(args)
    if "stopped_after" in results:
        print(f"stopped after {results['stopped_after']} new predictions; run again to resume")
    else:
        print(render_tables(results))
        print(f"wrote {os.path.join(args.output, 'results.json')}, results.md, keep_ratio.png, predictions.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
