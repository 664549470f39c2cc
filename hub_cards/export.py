"""Export a trained AffectVerse as a complete Hub repository folder: weights, remote code, processor, card, handler.

    python -m hub_cards.export --adapter outputs/demo --results outputs/bench/results.json \\
        --repo-id org/affectverse --output hub/affectverse

Input: an adapter folder from `training/sft.py` (merged here, onto its base: `tiny` or `--base`), or a full
checkpoint (`--checkpoint`, e.g. `<output>/merged`); optionally the evaluation runner's `results.json`. Output:
`config.json` with `auto_map` and `custom_pipelines`, the flat remote-code files (model, processor, pipeline and
what they import), sharded safetensors, processor / tokenizer files with the chat template, `generation_config.json`
(the belief placeholder suppressed), `README.md` (a model card rendered from `hub_cards/template.md` with
`ModelCardData`; `model-index` from the results) and `handler.py` (Inference Endpoints). Everything is written to a
temporary folder next to `--output` and moved into place only when complete: a failed export leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

from huggingface_hub import EvalResult, ModelCard, ModelCardData, metadata_load, metadata_save
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from metrics.evaluation import MODALITIES
from modeling_affectverse import AffectVerseForConditionalGeneration, AffectVerseProcessor
from modeling_affectverse.loading import hub_id, load
from modeling_affectverse.pipeline_affectverse import TASK, AffectVerseEmotionPipeline

HERE = os.path.dirname(os.path.abspath(__file__))
# every score the metric modules report (metrics/*/); counts and per-wheel skips are not scores
METRICS = {
    "accuracy", "uar", "macro_f1", "weighted_f1", "hit_rate", "has0_acc2", "has0_f1", "non0_acc2", "non0_f1", "acc3",
    "sims_acc2", "sims_f1", "precision", "recall", "f_score", "mae", "corr", "acc5", "acc7", "sims_acc3", "sims_acc5",
    "sims_mae", "sims_corr",
}  # fmt: skip
PER_WHEEL = ("hit_rate_", "precision_", "recall_", "f_score_")
COUNTS = {"unmatched", "num_samples", "num_nonzero", "task"}


class ExportError(ValueError):
    """The export cannot be made as asked; the message names the file or the value."""


def merged_model(adapter: str | None, checkpoint: str | None, base: str | None):
    """(merged model, processor) from an adapter folder on its base, or from a full checkpoint folder."""
    if (adapter is None) == (checkpoint is None):
        raise ExportError("give exactly one of --adapter (a training/sft.py output) or --checkpoint (a full model)")
    if checkpoint is not None:
        if not os.path.isdir(checkpoint) or not any(f.endswith(".safetensors") for f in os.listdir(checkpoint)):
            raise ExportError(f"{checkpoint}: no weights file (*.safetensors) in the checkpoint folder")
        model = AffectVerseForConditionalGeneration.from_pretrained(checkpoint)
        return model, AffectVerseProcessor.from_pretrained(checkpoint)
    weights = os.path.join(adapter, "adapter_model.safetensors")
    config_path = os.path.join(adapter, "adapter_config.json")
    for path in (config_path, weights):
        if not os.path.isfile(path):
            raise ExportError(f"{path}: missing, not an adapter folder written by training/sft.py")
    recorded = json.load(open(config_path)).get("base_model_name_or_path")
    base = base or recorded or "tiny"
    if recorded and base != recorded:
        raise ExportError(f"{adapter} was trained on {recorded!r}, not on the given base {base!r}")
    try:  # the base built as it was trained (ewm_config.json), the adapter put on it
        adapted, processor = load(adapter, base=base)
    except (RuntimeError, ValueError, KeyError) as err:  # shape or key mismatches
        raise ExportError(f"{adapter} does not fit the base {base!r}: {str(err).splitlines()[0][:300]}") from err
    return adapted.merge_and_unload(), processor


def eval_results(results: dict, model_name: str) -> list[EvalResult]:
    """One model-index entry per (dataset, modality setting, keep ratio, metric) of a runner's results.json."""
    entries = []
    for dataset in sorted(results):
        for setting in sorted(results[dataset]):
            for ratio in sorted(results[dataset][setting], key=float, reverse=True):
                for name, value in sorted(results[dataset][setting][ratio].items()):
                    if name in COUNTS or name.startswith("skipped_"):
                        continue
                    if name not in METRICS and not name.startswith(PER_WHEEL):
                        raise ExportError(
                            f"results: unknown metric {name!r} (dataset {dataset}); known: {sorted(METRICS)}"
                        )
                    if value is None or (isinstance(value, float) and math.isnan(value)):
                        continue  # undefined on this data (e.g. every sample skipped): nothing to report
                    entries.append(
                        EvalResult(
                            task_type="video-classification",
                            task_name="Multimodal emotion recognition",
                            dataset_type=dataset,
                            dataset_name=dataset,
                            dataset_config=f"{MODALITIES.get(setting, setting)}, keep ratio {ratio}",
                            dataset_split="test",
                            metric_type=name,
                            metric_name=name,
                            metric_value=float(value),
                        )
                    )
    return entries


def results_table(results: dict | None) -> str:
    if not results:
        return "No evaluation results were given to this export."
    lines = ["| dataset | setting | keep ratio | metric | value |", "|---|---|---|---|---|"]
    for entry in eval_results(results, ""):
        lines.append(
            f"| {entry.dataset_name} | {entry.dataset_config.split(',')[0]} | {entry.dataset_config.split()[-1]} "
            f"| {entry.metric_type} | {entry.metric_value:.4f} |"
        )
    return "\n".join(lines)


EXAMPLE = "example.mp4"  # the widget's example clip, shipped in the repository
REQUIREMENTS = """# what the remote code imports beyond transformers and torch (media decoding, resampling)
av>=18.1,<20
torchaudio
"""


def write_space(folder: str, repo_id: str) -> None:
    """The Gradio Space (`hub_cards/space/`) ready to publish as its own Space repository: app, requirements, and
    its README with `models:` naming this model (the app loads what it names)."""
    os.makedirs(folder)
    source = os.path.join(HERE, "space")
    for name in ("app.py", "requirements.txt"):
        shutil.copy(os.path.join(source, name), os.path.join(folder, name))
    readme = os.path.join(folder, "README.md")
    shutil.copy(os.path.join(source, "README.md"), readme)
    metadata = metadata_load(readme)
    metadata["models"] = [repo_id]
    metadata_save(readme, metadata)


def render_card(
    repo_id: str,
    results: dict | None,
    provenance: str,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    example: bool = False,
) -> ModelCard:
    """The model card. Its metadata say only what is known: the base model and datasets when they are Hub ids, the
    widget example when a clip was shipped, the results that were measured."""
    name = repo_id.split("/")[-1]
    widget = None
    if example:
        widget = [{"example_title": "Example clip", "src": f"https://huggingface.co/{repo_id}/resolve/main/{EXAMPLE}"}]
    data = ModelCardData(
        model_name=name,
        base_model=base_model,
        library_name="transformers",
        pipeline_tag="video-classification",
        license="apache-2.0",
        tags=["affective-computing", "emotion-recognition", "multimodal", "world-model", "qwen2.5-omni"],
        datasets=datasets or None,
        eval_results=eval_results(results, name) if results else None,
        widget=widget,
    )
    return ModelCard.from_template(
        data,
        template_path=os.path.join(HERE, "template.md"),
        model_name=name,
        repo_id=repo_id,
        results_table=results_table(results),
        provenance=provenance,
    )


def save_pipeline(model, processor, folder: str, max_shard_size: str) -> None:
    """Save the model with the pipeline registered in its config as the `video-classification` custom pipeline, so
    `pipeline("video-classification", model=..., trust_remote_code=True)` (and the Hub widget) use it. The built-in
    video-classification entry of this process's registry is put back afterwards: exporting changes nothing else."""
    original = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    try:
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=AffectVerseEmotionPipeline, pt_model=AutoModel)
        AffectVerseEmotionPipeline(model=model, processor=processor).save_pretrained(
            folder, max_shard_size=max_shard_size
        )
    finally:
        if original is not None:
            PIPELINE_REGISTRY.supported_tasks[TASK] = original


def card_metadata(adapter: str | None, base: str | None, base_model_id: str | None, dataset_ids: list[str] | None):
    """(base model id, dataset ids) for the card, from what was trained: given ids are checked; else the adapter's
    recorded base when it is a Hub id, and the training datasets (`training_info.json`) that are Hub ids."""
    for value in [base_model_id, *(dataset_ids or [])]:
        if value is not None and hub_id(value) is None:
            raise ExportError(f"{value!r} is not a Hub repository id (org/name)")
    if base_model_id is None and adapter is not None:
        config = os.path.join(adapter, "adapter_config.json")
        recorded = json.load(open(config)).get("base_model_name_or_path") if os.path.isfile(config) else None
        base_model_id = hub_id(base or recorded)
    if dataset_ids is None and adapter is not None:
        info = os.path.join(adapter, "training_info.json")
        names = json.load(open(info)).get("datasets", []) if os.path.isfile(info) else []
        dataset_ids = [name for name in names if hub_id(name)]
    return base_model_id, dataset_ids or None


def export(
    output: str,
    repo_id: str,
    adapter: str | None = None,
    checkpoint: str | None = None,
    base: str | None = None,
    results_path: str | None = None,
    max_shard_size: str = "5GB",
    overwrite: bool = False,
    example: str | None = None,
    base_model_id: str | None = None,
    dataset_ids: list[str] | None = None,
) -> str:
    """Write the repository folder at `output` (atomically: a temporary folder renamed into place)."""
    output = os.path.abspath(output)
    if os.path.exists(output) and not overwrite:
        raise ExportError(f"{output} exists; pass --overwrite to replace it")
    if example is not None and not os.path.isfile(example):
        raise ExportError(f"{example}: example clip not found")
    base_model, datasets = card_metadata(adapter, base, base_model_id, dataset_ids)
    results = None
    if results_path is not None:
        if not os.path.isfile(results_path):
            raise ExportError(f"{results_path}: results file not found")
        results = json.load(open(results_path, encoding="utf-8"))
        eval_results(results, repo_id)  # validates every metric name before anything is written
    model, processor = merged_model(adapter, checkpoint, base)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(output))
    try:
        model.configure_generation(processor.tokenizer)  # stops at <|im_end|>, pads, never emits a placeholder
        save_pipeline(model, processor, staging, max_shard_size)  # weights, config, remote code, pipeline code
        processor.save_pretrained(staging)  # the pipeline does not save a processor (docs/architecture.md §7)
        shutil.copy(os.path.join(HERE, "handler.py"), os.path.join(staging, "handler.py"))
        with open(os.path.join(staging, "requirements.txt"), "w", encoding="utf-8") as handle:
            handle.write(REQUIREMENTS)
        if example is not None:
            shutil.copy(example, os.path.join(staging, EXAMPLE))
        write_space(os.path.join(staging, "space"), repo_id)
        source = adapter or checkpoint
        provenance = f"Exported from `{os.path.basename(os.path.normpath(source))}` with `hub_cards/export.py`."
        if (base or "tiny") == "tiny" and adapter is not None:
            provenance += " Its base is the embedded tiny random model: a demonstration, not a usable recognizer."
        card = render_card(repo_id, results, provenance, base_model, datasets, example is not None)
        card.save(os.path.join(staging, "README.md"))
        os.chmod(staging, 0o755)  # mkdtemp makes it private
        if os.path.exists(output):
            shutil.rmtree(output)
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", help="adapter folder written by training/sft.py")
    parser.add_argument("--checkpoint", help="full AffectVerse checkpoint folder (e.g. <output>/merged)")
    parser.add_argument("--base", help="the adapter's base (default: recorded in the adapter, else tiny)")
    parser.add_argument("--results", help="results.json of metrics/evaluation.py")
    parser.add_argument("--repo-id", required=True, help="org/name the card's snippets load")
    parser.add_argument("--output", required=True, help="the repository folder to write")
    parser.add_argument("--max-shard-size", default="5GB")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--example", help="a clip to ship as the widget's example (example.mp4)")
    parser.add_argument("--base-model-id", help="the card's base_model (default: the adapter's base, if a Hub id)")
    parser.add_argument(
        "--dataset-ids",
        nargs="+",
        help="the card's datasets, Hub ids (default: the training datasets that are Hub ids; others are left out)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        folder = export(
            args.output,
            args.repo_id,
            args.adapter,
            args.checkpoint,
            args.base,
            args.results,
            args.max_shard_size,
            args.overwrite,
            args.example,
            args.base_model_id,
            args.dataset_ids,
        )
    except ExportError as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 2
    print(f"exported to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
