"""Ablation runner: train variants x seeds from a recipe, evaluate each, and tabulate mean +- std over seeds.

    python -m training.ablate --variants full lora_only self_only lambda_0 random_tokens --seeds 0 1 2 \\
        --output outputs/ablation --jobs 2

For every (variant, seed) it trains `training/sft.py` on the recipe (default: the demo recipe) with the variant's
overrides from `configuration/ablations.yaml`, then on the recipe's held-out split:

- runs the evaluation runner (`metrics/evaluation.py`, closed-set scoring) over the modality settings (AVT, AT,
  VT) and keep ratios (1, 0.7, 0.5, 0.3: only the first rho of each clip is observed, the paper's Table 2 protocol);
- writes the imagination report (`metrics/imagination_report.py`) of the freshly initialised and of the trained
  model: imagination loss against the copy-last and set-mean baselines, target and prediction similarity, per-step
  cosine (the paper's Table 8).

Each run lives in `<output>/runs/<variant>/seed<k>/` with its arguments, recipe and seed in `result.json` next to its
numbers. A run whose `result.json` exists is not redone: an interrupted sweep resumes where it stopped. At the end
`<output>/results.json`, `results.md` (tables) and `keep_ratio.png` (accuracy vs keep ratio, error bars over seeds)
are written from all finished runs. `--jobs 2` runs two trainings at once, one thread each (faster on 2 cores than
one run with two threads: the tiny model is dominated by per-operation overhead).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import yaml
from tqdm.auto import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = os.path.join(ROOT, "configuration", "ablations.yaml")
RECIPE = os.path.join(ROOT, "configuration", "recipes", "demo.yaml")
MODALITIES = ("AVT", "AT", "VT")
KEEP_RATIOS = (1.0, 0.7, 0.5, 0.3, 0.1)
IMAGINATION_RATIOS = (0.3, 0.5, 0.7)
ENDPOINT_SETTING, ENDPOINT_RATIO = "AVT", 0.5  # the primary endpoint's cell (issue 23), fixed before the sweep
RIDGE_FIT_CLIPS = 200  # training clips the ridge forecaster is fit on (x 3 keep ratios)
# docs/miniature (issue 23): the variants with identical truncation exposure, the negative control, the pool
MINIATURE = (
    "lora_only",
    "lora_cut",
    "pooling",
    "random_tokens",
    "full",
    "full_residual",
    "lambda_0",
    "shuffled_targets",
    "full_unlabeled",
)
MINIATURE_DATA = "data/demo-miniature"  # 1,200 labelled clips (800 / 100 / 300) + 1,200 unlabelled


def load_variants(path: str = VARIANTS) -> dict[str, dict]:
    """Variant name -> overrides (`ewm_config` and training arguments)."""
    with open(path, encoding="utf-8") as handle:
        variants = yaml.safe_load(handle)
    for name, overrides in variants.items():
        if not isinstance(overrides, dict):
            raise ValueError(f"{path}: variant {name!r} must map to overrides, got {overrides!r}")
    return variants


def data_arguments(folder: str) -> list[str]:
    """sft.py arguments that train on the demo folder `folder` (generated first when missing)."""
    from modeling_affectverse.data.demo_data import NUM_CLIPS, NUM_UNLABELED, generate_demo_dataset

    manifest = os.path.join(folder, "emotion.jsonl")
    if not os.path.isfile(manifest):
        generate_demo_dataset(folder, NUM_CLIPS, num_unlabeled=NUM_UNLABELED, workers=os.cpu_count() or 1)
    return ["--train_manifest", manifest, "--demo_data", ""]


def variant_arguments(overrides: dict) -> list[str]:
    """Command-line arguments of training/sft.py for a variant's overrides."""
    arguments = []
    for key, value in overrides.items():
        arguments += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return arguments


def with_pool(overrides: dict, data: str | None) -> dict:
    """A variant's overrides with its `unlabeled_manifest` taken from the `--data` folder (the pool of the clips
    trained on), when one is given."""
    if data and "unlabeled_manifest" in overrides:
        return {
            **overrides,
            "unlabeled_manifest": os.path.join(data, os.path.basename(overrides["unlabeled_manifest"])),
        }
    return overrides


# -- one run (a worker process) -------------------------------------------------------------------------------
def run_one(spec: dict) -> dict:
    """Train one (variant, seed), evaluate it, write and return its result (called in a worker process)."""
    import torch

    from metrics.evaluation import run as run_benchmark
    from metrics.imagination_report import imagination_report
    from modeling_affectverse.data.manifest import load_manifest
    from training.sft import build_parser as sft_parser
    from training.sft import main

    torch.set_num_threads(spec["threads"])
    run_dir, started = spec["run_dir"], time.time()
    model_dir = os.path.join(run_dir, "model")
    arguments = [
        "--config",
        spec["recipe"],
        "--seed",
        str(spec["seed"]),
        "--output_dir",
        model_dir,
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--evaluate_held_out",
        "false",
        *variant_arguments(spec["overrides"]),
        *spec["extra"],
    ]
    script_args, training_args, model_args = sft_parser().parse_args_and_config(arguments)
    reports, held_out, fit_rows, store = {}, [], [], {}  # store: each report clip decoded once for both reports

    def report_at_init(trainer):  # the model as training starts: one load, the same model the run then trains
        rows = load_manifest(script_args.train_manifest, media_root=script_args.media_root)  # (made by main if demo)
        held_out.extend(rows.filter(lambda row: row["split"] == script_args.eval_split))
        train = rows.filter(lambda row: row["split"] == script_args.train_split)
        fit_rows.extend(train.select(range(min(RIDGE_FIT_CLIPS, len(train)))))
        reports["init"] = imagination_report(
            trainer.model, trainer.processing_class, held_out, IMAGINATION_RATIOS, fps=training_args.decode_fps,
            fit_rows=fit_rows, media_store=store,
        )  # fmt: skip

    trainer = main(script_args, training_args, model_args, before_training=report_at_init)
    logs = [entry for entry in trainer.state.log_history if "lm_loss" in entry]
    report_trained = imagination_report(
        trainer.model, trainer.processing_class, held_out, IMAGINATION_RATIOS, fps=training_args.decode_fps,
        fit_rows=fit_rows, media_store=store,
    )  # fmt: skip
    del trainer
    store.clear()  # the benchmark keeps its own

    # a model trained to answer <think>...</think><answer>...</answer> is scored in that format: generated, extracted
    reasoning = spec["overrides"].get("answer_format") == "reasoning"
    bench = argparse.Namespace(
        model=model_dir,
        manifest=[script_args.train_manifest],
        split=script_args.eval_split,
        output=os.path.join(run_dir, "bench"),
        modalities=list(spec["modalities"]),
        keep_ratios=list(spec["ratios"]),
        scoring="generate" if reasoning else "closed_set",
        batch_size=8,
        max_predictions=None,
        answer_format="reasoning" if reasoning else "label",
        cache_media=True,  # the test clips decoded once for all settings and keep ratios
    )
    benchmark = run_benchmark(bench)
    result = {
        "variant": spec["variant"],
        "seed": spec["seed"],
        "recipe": spec["recipe"],
        "arguments": arguments,
        "overrides": spec["overrides"],
        "benchmark": benchmark,
        "imagination": {"init": reports["init"], "trained": report_trained},
        "final_logs": logs[-10:],
        "seconds": round(time.time() - started, 1),
        "run_dir": _relative(run_dir),
    }
    with open(os.path.join(run_dir, "result.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    return result


# -- the sweep ------------------------------------------------------------------------------------------------
def sweep(args) -> dict:
    """Run every missing (variant, seed), at most `jobs` at once, then aggregate all finished runs."""
    variants = load_variants(args.variants_file)
    unknown = [v for v in args.variants if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; {args.variants_file} defines {sorted(variants)}")
    todo, runs = [], []
    for variant in args.variants:
        for seed in args.seeds:
            run_dir = os.path.join(args.output, "runs", variant, f"seed{seed}")
            runs.append(run_dir)
            if os.path.isfile(os.path.join(run_dir, "result.json")):
                continue  # finished earlier: resumable
            os.makedirs(run_dir, exist_ok=True)
            spec = {
                "variant": variant,
                "seed": seed,
                "run_dir": run_dir,
                "recipe": args.recipe,
                "overrides": with_pool(variants[variant], args.data),
                "extra": args.extra,
                "modalities": args.modalities,
                "ratios": args.keep_ratios,
                "threads": max(1, (os.cpu_count() or 1) // args.jobs),
            }
            with open(os.path.join(run_dir, "spec.json"), "w", encoding="utf-8") as handle:
                json.dump(spec, handle, indent=2)
            todo.append(run_dir)
    print(f"{len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to do", flush=True)
    running: list[tuple[str, subprocess.Popen]] = []
    failed = []
    with tqdm(total=len(todo), desc="ablation runs", disable=not todo) as progress:
        while todo or running:
            while todo and len(running) < args.jobs:
                run_dir = todo.pop(0)
                env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // args.jobs))}
                log = open(os.path.join(run_dir, "log.txt"), "w", encoding="utf-8")  # noqa: SIM115
                command = [sys.executable, "-m", "training.ablate", "--worker", os.path.join(run_dir, "spec.json")]
                running.append((run_dir, subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)))
            time.sleep(1.0)
            for item in list(running):
                run_dir, process = item
                if process.poll() is not None:
                    running.remove(item)
                    progress.update(1)
                    if process.returncode:
                        failed.append(run_dir)
                        tqdm.write(f"FAILED: {run_dir} (see {os.path.join(run_dir, 'log.txt')})")
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")
    results = [json.load(open(os.path.join(r, "result.json"), encoding="utf-8")) for r in runs]
    summary = aggregate(results, args)
    write_reports(summary, args.output)
    return summary


def _relative(path: str) -> str:
    """A path inside the checkout, relative to it (reports are committed); anything else unchanged."""
    return os.path.relpath(path, ROOT) if os.path.isabs(path) and path.startswith(ROOT + os.sep) else path


def _mean_std(values: list[float]) -> dict:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def aggregate(results: list[dict], args) -> dict:
    """Mean +- std over seeds of held-out accuracy per variant x setting x rho, and of the imagination statistics."""
    by_variant: dict[str, list[dict]] = {}
    for result in results:
        by_variant.setdefault(result["variant"], []).append(result)
    accuracy, imagination, runs = {}, {}, {}
    parameters = evaluated_parameters(results, args)
    correct = _correctness(results, ENDPOINT_SETTING, ENDPOINT_RATIO)  # read once: the endpoint and the comparisons
    for variant, items in by_variant.items():
        runs[variant] = [
            {"seed": r["seed"], "arguments": [_relative(a) for a in r["arguments"]], "seconds": r["seconds"]}
            for r in items
        ]
        table = {}
        for setting in args.modalities:
            for ratio in args.keep_ratios:
                values = []
                for r in items:
                    for dataset_scores in r["benchmark"].values():
                        scores = dataset_scores.get(setting, {}).get(f"{float(ratio):g}")
                        if scores is not None:
                            values.append(scores["accuracy"])
                table.setdefault(setting, {})[f"{float(ratio):g}"] = _mean_std(values)
        accuracy[variant] = table
        stats = {}
        for stage in ("init", "trained"):
            reports = [r["imagination"][stage] for r in items if r["imagination"][stage] is not None]
            if not reports:
                continue
            keys = (
                "ewm_loss",
                "copy_last_loss",
                "set_mean_loss",
                "mean_of_past_loss",
                "ridge_loss",
                "skill_copy_last",
                "skill_set_mean",
                "skill_mean_of_past",
                "skill_ridge",
                "target_similarity",
                "prediction_similarity",
            )
            stats[stage] = {key: _mean_std([rep.get(key) for rep in reports]) for key in keys}
            steps = len(reports[0]["cosine_per_step"])
            stats[stage]["cosine_per_step"] = [
                _mean_std([rep["cosine_per_step"][k] for rep in reports]) for k in range(steps)
            ]
            probes = [rep["probes"] for rep in reports if rep.get("probes")]
            if probes:
                stats[stage]["probes"] = {
                    rho: {kind: _mean_std([p[rho][kind] for p in probes]) for kind in kinds}
                    for rho, kinds in probes[0].items()
                }
        imagination[variant] = stats
    return {
        "recipe": _relative(args.recipe),
        "seeds": list(args.seeds),
        "variants": list(args.variants),
        "modalities": list(args.modalities),
        "keep_ratios": [float(r) for r in args.keep_ratios],
        "extra_arguments": list(args.extra),
        "accuracy": accuracy,
        "imagination": imagination,
        "runs": runs,
        "primary_endpoint": primary_endpoint(results, correct=correct),
        "secondary_comparisons": secondary_comparisons(results, correct=correct),
        "ceilings": held_out_ceilings(parameters, args),
        "start_naming": start_naming(results, parameters, args),
    }


def run_predictions(result: dict) -> list[dict]:
    """A run's prediction records (`bench/predictions.jsonl`); none when the run has no such file."""
    path = os.path.join(ROOT, result.get("run_dir", ""), "bench", "predictions.jsonl")
    if not result.get("run_dir") or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _scored(records: list[dict], setting: str, ratio: float) -> list[dict]:
    """The records of one table cell (modality setting x keep ratio) that were scored (not skipped)."""
    return [
        r
        for r in records
        if r["modality"] == setting and float(r["keep_ratio"]) == float(ratio) and not r.get("skipped")
    ]


def clip_correctness(result: dict, setting: str, ratio: float) -> dict[str, bool]:
    """Clip id -> right or wrong, from a run's predictions (`bench/predictions.jsonl`)."""
    return {r["id"]: r.get("prediction") == r["reference"] for r in _scored(run_predictions(result), setting, ratio)}


# secondary comparisons at the endpoint's cell, stated with it before the sweep (exploratory: no multiplicity
# correction): the negative control, the pool, the forecaster's parameterisation, and what beliefs add over free
# tokens and over an untrained imagination
SECONDARY = (
    ("full", "shuffled_targets"),
    ("full_unlabeled", "full"),
    ("full_residual", "full"),
    ("full", "random_tokens"),
    ("full", "lambda_0"),
)


def _correctness(results: list[dict], setting: str, ratio: float) -> dict[str, dict[int, dict[str, bool]]]:
    """Variant -> seed -> clip id -> right or wrong."""
    correct: dict[str, dict[int, dict[str, bool]]] = {}
    for result in results:
        correct.setdefault(result["variant"], {})[result["seed"]] = clip_correctness(result, setting, ratio)
    return correct


def paired_comparison(correct: dict, a: str, b: str) -> dict | None:
    """Accuracy of `a` minus `b` on the clips both were scored on, paired by seed: a t interval over the seeds'
    differences, a bootstrap over clips, and McNemar per seed (two single models on the same clips)."""
    from metrics.statistics import mcnemar, paired_bootstrap, t_interval

    if a not in correct or b not in correct:
        return None
    seeds = sorted(s for s in set(correct[a]) & set(correct[b]) if correct[a][s] and correct[b][s])
    clips = sorted(set.intersection(*[set(correct[v][s]) for v in (a, b) for s in seeds])) if seeds else []
    if not clips:
        return None
    x = np.array([[correct[a][s][c] for c in clips] for s in seeds], dtype=float)
    y = np.array([[correct[b][s][c] for c in clips] for s in seeds], dtype=float)
    return {
        "a": a,
        "b": b,
        "seeds": seeds,
        "clips": len(clips),
        "t_over_seeds": t_interval(x.mean(1) - y.mean(1)),
        "bootstrap_over_clips": paired_bootstrap(x, y),
        "mcnemar_per_seed": [mcnemar(x[k], y[k]) for k in range(len(seeds))],
    }


def primary_endpoint(
    results: list[dict], setting: str = ENDPOINT_SETTING, ratio: float = ENDPOINT_RATIO, correct: dict | None = None
) -> dict | None:
    """`full` minus the better of `pooling` / `lora_cut` (higher mean over seeds, chosen once), cut-clip accuracy
    at rho = 0.5 under A+V+T: paired by seed (t interval) and by clip (bootstrap); stated before the sweep runs.
    `correct`: `_correctness` of `results` at the cell, when the caller has it already."""
    correct = _correctness(results, setting, ratio) if correct is None else correct
    comparators = [v for v in ("pooling", "lora_cut") if v in correct]
    if "full" not in correct or not comparators:
        return None

    def mean_accuracy(variant: str) -> float:
        return float(np.mean([np.mean(list(c.values())) for c in correct[variant].values() if c]))

    comparator = max(comparators, key=mean_accuracy)
    comparison = paired_comparison(correct, "full", comparator)
    if comparison is None:
        return None
    return {"setting": setting, "keep_ratio": ratio, "comparator": comparator, **comparison}


def secondary_comparisons(
    results: list[dict], setting: str = ENDPOINT_SETTING, ratio: float = ENDPOINT_RATIO, correct: dict | None = None
) -> list[dict]:
    """The `SECONDARY` pairs at the endpoint's cell, each as `paired_comparison` (pairs not run are left out)."""
    correct = _correctness(results, setting, ratio) if correct is None else correct
    pairs = [paired_comparison(correct, a, b) for a, b in SECONDARY]
    return [{"setting": setting, "keep_ratio": ratio, **pair} for pair in pairs if pair is not None]


def evaluated_parameters(results: list[dict], args) -> list[dict]:
    """The generator's draws for the evaluated clips (`parameters.jsonl` next to the recipe's manifest, the
    demo's); empty for other data."""
    from metrics.ceilings import read_parameters

    if not results:
        return []
    arguments = results[0]["arguments"]
    manifest = arguments[arguments.index("--train_manifest") + 1] if "--train_manifest" in arguments else None
    if manifest is None:
        with open(args.recipe, encoding="utf-8") as handle:
            manifest = yaml.safe_load(handle).get("train_manifest")
    path = os.path.join(os.path.dirname(os.path.join(ROOT, manifest or "")), "parameters.jsonl")
    if not manifest or not os.path.isfile(path):
        return []
    return read_parameters(path, split="test")


def held_out_ceilings(parameters: list[dict], args) -> dict | None:
    """The ideal observer and the dominant-expression reader on the evaluated clips, per setting and rho."""
    from metrics.ceilings import ceilings

    return ceilings(parameters, args.keep_ratios, args.modalities) if parameters else None


def start_naming(results: list[dict], parameters: list[dict], args, setting: str = "AVT") -> dict | None:
    """Variant -> rho -> mean +- std over seeds of the share of answers that name the clip's start expression
    (never its label): how often a model reads the expression on screen instead of the change."""
    start = {row["id"]: row["start"] for row in parameters}
    if not start:
        return None
    shares: dict[str, dict[str, list[float]]] = {}
    for result in results:
        records = run_predictions(result)
        for ratio in args.keep_ratios:
            cell = [r for r in _scored(records, setting, ratio) if r["id"] in start]
            named = [r.get("prediction") == start[r["id"]] for r in cell]
            if named:
                shares.setdefault(result["variant"], {}).setdefault(f"{float(ratio):g}", []).append(np.mean(named))
    if not shares:
        return None
    return {v: {r: _mean_std([float(x) for x in xs]) for r, xs in by_ratio.items()} for v, by_ratio in shares.items()}


def _table_head(columns: list[str]) -> list[str]:
    """A markdown table's header and rule: a `variant` column, then `columns`."""
    return ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]


def _cell(stat: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if stat is None or stat["mean"] is None:
        return "–"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def render(summary: dict) -> str:
    """The markdown report: accuracy tables and the imagination table (all from `summary`, nothing else)."""
    variants, ratios = summary["variants"], [f"{r:g}" for r in summary["keep_ratios"]]
    seeds = ", ".join(str(s) for s in summary["seeds"])
    recipe = summary["recipe"]
    lines = [
        f"Held-out accuracy (%), mean ± std over seeds {seeds}; closed-set scoring; recipe `{recipe}`; "
        "keep ratio rho = fraction of each clip observed.",
        "",
    ]
    for setting in summary["modalities"]:
        lines += [
            f"### {setting}",
            "",
            *_table_head([f"rho = {r}" for r in ratios]),
        ]
        for variant in variants:
            row = summary["accuracy"][variant].get(setting, {})
            lines.append(f"| {variant} | " + " | ".join(_cell(row.get(r)) for r in ratios) + " |")
        ceilings = (summary.get("ceilings") or {}).get(setting)
        if ceilings:
            for key, name in (
                ("ideal_observer", "*ideal observer*"),
                ("dominant_reader", "*dominant-expression reader*"),
            ):
                cells = [f"{100 * ceilings[r][key]:.1f}" if r in ceilings else "–" for r in ratios]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _start_naming_lines(summary)
    lines += _comparison_lines(summary)
    lines += [
        "### Imagination on held-out clips (rho = 0.3, 0.5, 0.7)",
        "",
        "Skill = EWM loss / baseline loss (below 1 beats the baseline: copying the last observed token, the mean",
        "of the observed tokens, a ridge regression on [mean, last] fit on training clips, or the held-out set's mean",
        "target). Similarity = mean cosine between different clips' targets / last-step",
        "predictions (near 1: collapsed to a constant). Cosine per rollout step as in the paper's Table 8.",
        "",
        "| variant | stage | EWM loss | skill vs copy-last | skill vs mean-of-past | skill vs ridge "
        "| skill vs set-mean | target sim. | prediction sim. | cosine per step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        for stage in ("init", "trained"):
            stats = summary["imagination"][variant].get(stage)
            if stats is None:
                continue
            steps = " / ".join(_cell(c, 1.0, 3) for c in stats["cosine_per_step"])
            cells = [
                _cell(stats["ewm_loss"], 1.0, 3),
                _cell(stats["skill_copy_last"], 1.0, 2),
                _cell(stats.get("skill_mean_of_past"), 1.0, 2),
                _cell(stats.get("skill_ridge"), 1.0, 2),
                _cell(stats["skill_set_mean"], 1.0, 2),
                _cell(stats["target_similarity"], 1.0, 3),
                _cell(stats["prediction_similarity"], 1.0, 3),
                steps,
            ]
            lines.append(f"| {variant} | {stage} | " + " | ".join(cells) + " |")
    lines += _probe_table(summary)
    no_imagination = [v for v in variants if not summary["imagination"][v]]
    if no_imagination:
        lines += ["", f"No imagination (nothing to report): {', '.join(no_imagination)}."]
    return "\n".join(lines) + "\n"


def _start_naming_lines(summary: dict) -> list[str]:
    """The table of answers that name the start expression, per variant and rho (A+V+T)."""
    naming = summary.get("start_naming")
    if not naming:
        return []
    ratios = [f"{r:g}" for r in summary["keep_ratios"]]
    lines = [
        "### Answers naming the start expression (%, A+V+T)",
        "",
        "The start is never the label: a model that names the expression dominating what it saw is wrong, and lands",
        "here; one that follows the change does not.",
        "",
        *_table_head([f"rho = {r}" for r in ratios]),
    ]
    for variant in summary["variants"]:
        row = naming.get(variant, {})
        lines.append(f"| {variant} | " + " | ".join(_cell(row.get(r)) for r in ratios) + " |")
    return [*lines, ""]


def _interval(stat: dict) -> str:
    return "–" if stat.get("low") is None else f"[{100 * stat['low']:+.1f}, {100 * stat['high']:+.1f}]"


def _mcnemar_cell(comparison: dict) -> str:
    return ", ".join(f"{m['p_value']:.2g} ({m['only_a']}/{m['only_b']})" for m in comparison["mcnemar_per_seed"])


def _comparison_lines(summary: dict) -> list[str]:
    """The primary endpoint's sentence and the table of secondary comparisons (each a paired comparison)."""
    lines = []
    endpoint = summary.get("primary_endpoint")
    if endpoint:
        t, boot = endpoint["t_over_seeds"], endpoint["bootstrap_over_clips"]
        lines += [
            f"**Primary endpoint** (stated before the run): {endpoint['setting']} accuracy at rho = "
            f"{endpoint['keep_ratio']:g}, `full` − `{endpoint['comparator']}` (the better of `pooling` / `lora_cut`): "
            f"{100 * t['mean']:+.1f} points; 95% t interval over {t['n']} seeds {_interval(t)}; 95% bootstrap over "
            f"{endpoint['clips']} test clips {_interval(boot)}; McNemar per seed, p (clips only `full` / only "
            f"`{endpoint['comparator']}` right): {_mcnemar_cell(endpoint)}.",
            "",
        ]
    secondary = summary.get("secondary_comparisons") or []
    if secondary:
        first = secondary[0]
        lines += [
            f"Secondary comparisons, same cell ({first['setting']}, rho = {first['keep_ratio']:g}; stated with the "
            "endpoint, exploratory, no correction for multiplicity): accuracy difference in points, 95% intervals, "
            "McNemar p per seed (clips only a / only b right).",
            "",
            "| a − b | difference | t over seeds | bootstrap over clips | McNemar per seed |",
            "|---|---|---|---|---|",
        ]
        for c in secondary:
            t, boot = c["t_over_seeds"], c["bootstrap_over_clips"]
            lines.append(
                f"| `{c['a']}` − `{c['b']}` | {100 * t['mean']:+.1f} | {_interval(t)} | {_interval(boot)} "
                f"| {_mcnemar_cell(c)} |"
            )
        lines.append("")
    return lines


def _probe_table(summary: dict) -> list[str]:
    """Rows of the label-probe table (trained models): belief tokens vs pooled observed tokens, per rho."""
    rows = [(v, summary["imagination"][v].get("trained", {}).get("probes")) for v in summary["variants"]]
    rows = [(v, p) for v, p in rows if p]
    if not rows:
        return []
    ratios = sorted(rows[0][1], key=float)
    ideal = (summary.get("ceilings") or {}).get("AVT", {})
    lines = [
        "",
        "### Label probes on held-out clips (trained models, A+V+T)",
        "",
        "Logistic regression for the final label, fit on training clips cut at rho, accuracy (%) on the test clips",
        "cut at rho: on the belief tokens the LLM receives, and on the mean observed token of each stream (pooled,",
        "no imagination). Beliefs no better than pooled: the aggregation adds nothing; both above the model's",
        "own accuracy: the LLM does not use what its inputs carry.",
        "",
        *_table_head([f"rho = {r} belief / pooled" for r in ratios]),
    ]
    for variant, probes in rows:
        cells = [f"{_cell(probes[r]['belief'])} / {_cell(probes[r]['pooled'])}" for r in ratios]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if ideal:
        lines.append(
            "| *ideal observer* | " + " | ".join(f"{100 * ideal[r]['ideal_observer']:.1f}" if r in ideal else "–"
                                               for r in ratios) + " |"
        )  # fmt: skip
    return lines


def plot(summary: dict, path: str, setting: str = "AVT") -> None:
    """Accuracy vs keep ratio under `setting`, one line per variant, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    ratios = summary["keep_ratios"]
    for offset, variant in enumerate(summary["variants"]):
        row = summary["accuracy"][variant].get(setting, {})
        means = [row[f"{r:g}"]["mean"] for r in ratios]
        stds = [row[f"{r:g}"]["std"] for r in ratios]
        if any(m is None for m in means):
            continue
        shift = (offset - (len(summary["variants"]) - 1) / 2) * 0.006  # keep error bars apart
        axis.errorbar(
            [r + shift for r in ratios],
            [100 * m for m in means],
            yerr=[100 * s for s in stds],
            marker="o",
            capsize=3,
            label=variant,
        )
    ceilings = (summary.get("ceilings") or {}).get(setting)
    if ceilings:  # the ideal observer per rho (the generator's own draws) and the dominant-expression reader
        for key, style, name in (("ideal_observer", "k--", "ideal observer"), ("dominant_reader", "k:", "dominant")):
            axis.plot(ratios, [100 * ceilings[f"{r:g}"][key] for r in ratios], style, lw=1, label=f"({name})")
    axis.set_xlabel("keep ratio rho (fraction of each clip observed)")
    axis.set_ylabel(f"held-out accuracy, % ({setting})")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_reports(summary: dict, output: str) -> None:
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    with open(os.path.join(output, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(render(summary))
    plot(summary, os.path.join(output, "keep_ratio.png"))


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one spec.json
    parser.add_argument("--recipe", default=RECIPE, help="training recipe (YAML) every variant starts from")
    parser.add_argument("--variants-file", default=VARIANTS)
    parser.add_argument("--variants", nargs="+", default=list(MINIATURE), help="names in --variants-file")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument(
        "--data",
        default=None,
        help=f"a demo folder every run trains and is scored on (made when missing, 1,200 + 1,200 clips; e.g. "
        f"{MINIATURE_DATA}): its emotion.jsonl replaces the recipe's manifest, its unlabeled.jsonl the variants' pool",
    )
    parser.add_argument("--output", default="outputs/ablation")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES)
    parser.add_argument("--keep-ratios", nargs="+", type=float, default=list(KEEP_RATIOS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each gets cores / jobs threads)")
    parser.add_argument("extra", nargs="*", help="sft.py arguments for every run, after --: -- --max_steps 50")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        with open(args.worker, encoding="utf-8") as handle:
            run_one(json.load(handle))
        return 0
    if args.jobs < 1 or any(not 0 < r <= 1 for r in args.keep_ratios):
        parser.error("--jobs must be >= 1 and --keep-ratios in (0, 1]")
    args.recipe = os.path.abspath(args.recipe)
    if args.data:
        args.extra = [*data_arguments(args.data), *args.extra]
    summary = sweep(args)
    print(render(summary))
    print(f"wrote {os.path.join(args.output, 'results.json')}, results.md, keep_ratio.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
