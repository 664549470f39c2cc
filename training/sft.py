"""Fine-tune AffectVerse: LoRA on the thinker's LLM attention + the Emotion World Module, with the imagination loss.

The embedded default (tiny random model, generated demo clips, CPU, a few minutes):

    python -m modeling_affectverse.data.demo_data --output data/demo
    accelerate launch training/sft.py --config configuration/recipes/demo.yaml

The paper's recipe (Qwen2.5-Omni-7B, GPUs; manifests from `python -m modeling_affectverse.data.convert`):

    accelerate launch --config_file configuration/accelerate/multi_gpu.yaml training/sft.py \\
        --config configuration/recipes/paper.yaml --train_manifest data/manifests/train.jsonl

Emotion-LLaMAv2's perception -> cognition curriculum: stage 1 labels only, stage 2 labels + reasoning
(`<think>...</think><answer>...</answer>`) starting from stage 1's adapter, with one command:

    python training/sft.py --config configuration/recipes/curriculum.yaml

Two CPU processes (gloo), as tested:

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        training/sft.py --config configuration/recipes/demo.yaml --use_cpu true
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

import torch
import yaml
from peft import PeftModel
from trl import ModelConfig, TrlParser

from metrics.evaluation import predict_batch
from modeling_affectverse.data.collator import (
    AffectVerseCollator,
    MediaOptions,
    answer_text,
    has_reasoning,
    row_problem,
)
from modeling_affectverse.data.demo_data import QUICKSTART_CLIPS, generate_demo_dataset
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.loading import EWM_CONFIG_FILE, load
from modeling_affectverse.processing_affectverse import ANSWER_FORMATS
from training.adapters import affectverse_lora_config, export_merged, write_adapter_card
from training.distributed import token_rows_on_this_device, trainable_identical
from training.trainer import AffectVerseSFTConfig, AffectVerseSFTTrainer


@dataclass
class ScriptArguments:
    """Data and end-of-run options."""

    train_manifest: str = field(default="data/demo/emotion.jsonl", metadata={"help": "Training manifest (JSONL)."})
    train_split: str = field(default="train", metadata={"help": "Rows of this split are trained on."})
    eval_manifest: str | None = field(default=None, metadata={"help": "Evaluation manifest (default: none)."})
    eval_split: str = field(default="test", metadata={"help": "Rows of this split are evaluated / predicted on."})
    media_root: str | None = field(default=None, metadata={"help": "Media paths root (default: manifest folder)."})
    unlabeled_manifest: str | None = field(
        default=None,
        metadata={
            "help": "Manifest of rows marked 'unlabeled' (e.g. data/demo/unlabeled.jsonl): mixed into training, they "
            "train the world model through the imagination loss only (no LM loss, no answer)."
        },
    )
    unlabeled_ratio: float = field(
        default=0.5,
        metadata={
            "help": "Share of the training rows drawn from --unlabeled_manifest (0.5: as many as the labelled rows; "
            "capped by the pool's size, which is then said)."
        },
    )
    demo_data: str | None = field(
        default=None, metadata={"help": "Generate the embedded demo dataset here first if it is missing."}
    )
    merge: bool = field(default=False, metadata={"help": "Also export a merged full checkpoint to <output>/merged."})
    evaluate_held_out: bool = field(
        default=False,
        metadata={
            "help": "After training, score the train manifest's eval split (closed-set, whole clips) and print the "
            "accuracy next to chance."
        },
    )
    ewm_config: dict | str | None = field(
        default=None,
        metadata={
            "help": "Overrides of the model's ewm_* config fields, the ablation switches (README, 'Ablations'): a "
            'mapping in a YAML recipe, a JSON object on the command line (\'{"ewm_context_mode": "self"}\').'
        },
    )

    answer_format: str = field(
        default="label",
        metadata={
            "help": "label: the answer alone; reasoning: <think>{row reasoning}</think><answer>{answer}</answer>; "
            "joint: training samples drawn half label, half reasoning (the curriculum's stage 2)"
        },
    )
    init_adapter: str | None = field(
        default=None,
        metadata={"help": "Start from this adapter folder (LoRA + EWM) instead of a new adapter: a curriculum stage."},
    )

    def __post_init__(self):
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}")
        if self.init_adapter is not None and not os.path.isfile(os.path.join(self.init_adapter, EWM_CONFIG_FILE)):
            raise ValueError(f"init_adapter {self.init_adapter}: not an adapter folder written by training/sft.py")
        if isinstance(self.ewm_config, str):
            self.ewm_config = json.loads(self.ewm_config) if self.ewm_config.strip() else None
        if not 0 <= self.unlabeled_ratio < 1:
            raise ValueError(f"unlabeled_ratio must lie in [0, 1), got {self.unlabeled_ratio}")
        unknown = sorted(k for k in self.ewm_config or {} if not k.startswith("ewm_"))
        if unknown:
            raise ValueError(f"ewm_config takes only ewm_* fields of AffectVerseConfig, got {unknown}")


def load_rows(path: str, split: str, media_root: str | None, strict: bool):
    """The manifest's rows of one split, minus rows that cannot be trained on (counted, or raised when strict)."""
    rows = load_manifest(path, media_root=media_root)
    rows = rows.filter(lambda row: row["split"] == split, desc=f"split {split}")
    problems = [p for p in map(row_problem, rows) if p is not None]
    if problems and strict:
        raise ValueError(f"{len(problems)} unusable row(s) in {path}, first: {problems[0]}")
    if problems:
        print(f"skipping {len(problems)} unusable row(s) of {path} ({split}), first: {problems[0]}")
        rows = rows.filter(lambda row: row_problem(row) is None)
    if len(rows) == 0:
        raise ValueError(f"{path} has no usable rows in split {split!r}")
    return rows


def mix_unlabeled(train_rows, script_args, strict: bool, seed: int):
    """The labelled training rows plus rows of the unlabeled pool, so that `unlabeled_ratio` of the mix is unlabeled
    (a seeded draw from the pool; all of it when the pool is smaller, and then said)."""
    import datasets

    pool = load_rows(script_args.unlabeled_manifest, "unlabeled", script_args.media_root, strict)
    labelled = pool.filter(lambda row: not row["unlabeled"])
    if len(labelled):
        raise ValueError(f"{script_args.unlabeled_manifest}: {len(labelled)} row(s) are not marked 'unlabeled'")
    ratio = script_args.unlabeled_ratio
    wanted = round(len(train_rows) * ratio / (1 - ratio))
    if wanted > len(pool):
        print(f"unlabeled_ratio {ratio}: {wanted} unlabeled rows wanted, the pool has {len(pool)}: all are used")
    pool = pool.shuffle(seed=seed).select(range(min(wanted, len(pool))))
    print(f"training on {len(train_rows)} labelled + {len(pool)} unlabeled rows (imagination loss only)")
    return datasets.concatenate_datasets([train_rows, pool])


def held_out_accuracy(
    model, processor, rows, fps: float = 3.0, batch_size: int = 8, keep_ratio: float = 1.0
) -> tuple[float, float, int]:
    """Closed-set accuracy of the model on manifest rows (every modality; clips cut at `keep_ratio`, 1: whole),
    chance (1 / candidates) and the number of rows scored. Emotion rows choose among their label set, sentiment rows
    between the two answers."""
    collator = AffectVerseCollator.for_prediction(processor, keep_ratio=keep_ratio, media=MediaOptions(fps=fps))
    model.eval()
    correct = total = 0
    candidates = 0
    for start in range(0, len(rows), batch_size):
        batch = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        for row, result in zip(batch, predict_batch(model, collator, batch, "closed_set"), strict=True):
            if result.get("skipped"):
                continue  # unusable media: counted by the collator's warning, not scored
            candidates = len(result["probabilities"])
            correct += result["prediction"] == answer_text(row)
            total += 1
    return correct / max(total, 1), 1.0 / max(candidates, 1), total


def report_cut_clips(trainer, processor, rows, script_args, fps: float, keep_ratio: float = 0.5) -> None:
    """The held-out accuracy on clips cut at `keep_ratio`, next to the ideal observer's (the demo's generator
    parameters, `parameters.jsonl` beside the manifest) when they are there."""
    from metrics.ceilings import ideal_observer, read_parameters

    accuracy, chance, count = held_out_accuracy(trainer.model, processor, rows, fps=fps, keep_ratio=keep_ratio)
    line = f"held-out accuracy at rho = {keep_ratio:g} (first half of each clip): {accuracy:.3f} (chance {chance:.3f}"
    parameters = os.path.join(os.path.dirname(script_args.train_manifest), "parameters.jsonl")
    if os.path.isfile(parameters):
        ids = {row["id"] for row in rows}
        clips = [p for p in read_parameters(parameters) if p["id"] in ids]
        line += f", ideal observer {ideal_observer(clips, keep_ratio, 'AV'):.3f}"
    print(line + ")")


def report_processes(trainer: AffectVerseSFTTrainer) -> None:
    """Multi-process runs: each process reports its optimizer steps; rank 0 checks the trained weights agree (whole
    weights, gathered from the shards under ZeRO-3 / FSDP2)."""
    accelerator = trainer.accelerator
    if accelerator.num_processes == 1:
        return
    print(f"process {accelerator.process_index}: {trainer.state.global_step} optimizer steps")
    same = trainable_identical(trainer)  # whole weights, not shards
    if accelerator.is_main_process:
        state = "identical" if same else "DIFFERENT"
        print(f"trainable parameters {state} on all {accelerator.num_processes} processes")


def main(
    script_args: ScriptArguments, training_args: AffectVerseSFTConfig, model_args: ModelConfig, before_training=None
):
    """Build, train, save (and optionally merge and score) as the arguments say. `before_training(trainer)`, when
    given, sees the trainer's model as training starts (the ablation runner's report at initialisation)."""
    # Model
    if script_args.init_adapter is not None:  # a curriculum stage: the previous stage's architecture and weights
        with open(os.path.join(script_args.init_adapter, EWM_CONFIG_FILE), encoding="utf-8") as handle:
            saved = json.load(handle) or None
        if script_args.ewm_config not in (None, saved):
            raise ValueError(f"ewm_config {script_args.ewm_config} differs from {script_args.init_adapter}'s {saved}")
        script_args.ewm_config = saved
    dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else model_args.dtype
    # tiny (the embedded default), an AffectVerse or a Qwen2.5-Omni checkpoint; a new EWM drawn from the run's seed
    model, processor = load(model_args.model_name_or_path or "tiny", script_args.ewm_config, training_args.seed, dtype)
    if script_args.init_adapter is not None:
        with token_rows_on_this_device():
            model = PeftModel.from_pretrained(model, script_args.init_adapter, is_trainable=True)
    peft_config = (
        None
        if script_args.init_adapter is not None
        else affectverse_lora_config(
            processor.belief_token_id,
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=model_args.lora_target_modules,
            modules_to_save=model_args.lora_modules_to_save,
            with_ewm=model.config.has_ewm,
            with_prefusion=model.prefusion is not None,
        )
    )

    # Dataset
    if script_args.demo_data and not os.path.isfile(script_args.train_manifest):
        generate_demo_dataset(script_args.demo_data, QUICKSTART_CLIPS, workers=os.cpu_count() or 1)
    strict = training_args.strict_data
    train_rows = load_rows(script_args.train_manifest, script_args.train_split, script_args.media_root, strict)
    if script_args.answer_format == "reasoning":  # rows without a reasoning text cannot be trained in this format
        reasoned = train_rows.filter(has_reasoning)
        if len(reasoned) == 0:
            raise ValueError(
                f"{script_args.train_manifest}: no row has a 'reasoning' text for answer_format reasoning "
                "(demo data made before it had one? regenerate: python -m modeling_affectverse.data.demo_data)"
            )
        if len(reasoned) < len(train_rows):
            print(f"answer_format reasoning: {len(train_rows) - len(reasoned)} row(s) without reasoning left out")
        train_rows = reasoned
    if script_args.unlabeled_manifest and script_args.unlabeled_ratio > 0:
        train_rows = mix_unlabeled(train_rows, script_args, strict, training_args.seed)
    eval_manifest = script_args.eval_manifest
    eval_rows = None
    if eval_manifest:
        eval_rows = load_rows(eval_manifest, script_args.eval_split, script_args.media_root, strict)
    collator = AffectVerseCollator.for_training(
        processor,
        keep_ratio_range=(training_args.keep_ratio_min, training_args.keep_ratio_max),
        modality_dropout=training_args.modality_dropout,
        whole_clip_probability=training_args.whole_clip_probability,
        seed=training_args.seed,
        answer_format=script_args.answer_format,
        strict=strict,
        media=MediaOptions(
            fps=training_args.decode_fps, max_frames=training_args.max_frames, cache=training_args.cache_media
        ),
    )
    eval_collator = AffectVerseCollator.for_prediction(
        processor,
        keep_ratio=training_args.eval_keep_ratio or 1.0,
        with_future=training_args.eval_keep_ratio is not None,
        with_answer=True,
        answer_format=script_args.answer_format,
        strict=strict,
        media=MediaOptions(
            fps=training_args.decode_fps, max_frames=training_args.max_frames, cache=training_args.cache_media
        ),
    )
    processor.max_length = training_args.max_length

    # Training
    trainer = AffectVerseSFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        eval_data_collator=eval_collator,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=processor,
        peft_config=peft_config,
    )
    if before_training is not None:
        before_training(trainer)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    report_processes(trainer)
    trainer.save_model(training_args.output_dir)  # the adapter: LoRA + EWM + belief row
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)
        with open(os.path.join(training_args.output_dir, EWM_CONFIG_FILE), "w", encoding="utf-8") as handle:
            json.dump(script_args.ewm_config or {}, handle, indent=2, sort_keys=True)  # the base's architecture
        write_adapter_card(
            training_args.output_dir,
            base=model_args.model_name_or_path or "tiny",
            lora_targets=model_args.lora_target_modules,
            train_manifest=script_args.train_manifest,
            datasets=sorted(set(train_rows["dataset"])),
            train_rows=len(train_rows),
            steps=trainer.state.global_step,
            seed=training_args.seed,
            ewm_config=script_args.ewm_config,
        )
        if script_args.merge:  # from the saved adapter on a clean base, not from the trainer's model
            export_merged(training_args.output_dir, os.path.join(training_args.output_dir, "merged"))
        if collator.skipped:
            print(f"skipped rows during training: {dict(collator.skipped)}")
        if collator.adjusted:
            print(f"rows changed to fit during training: {dict(collator.adjusted)}")
        if script_args.evaluate_held_out:
            rows = load_rows(script_args.train_manifest, script_args.eval_split, script_args.media_root, strict)
            accuracy, chance, count = held_out_accuracy(trainer.model, processor, rows, fps=collator.media.fps)
            print(
                f"held-out accuracy ({script_args.eval_split} split, {count} clips, closed-set, whole clips): "
                f"{accuracy:.3f} (chance {chance:.3f})"
            )
            report_cut_clips(trainer, processor, rows, script_args, collator.media.fps)
        print(f"adapter (LoRA + EWM) saved to {os.path.abspath(training_args.output_dir)}")
    return trainer


def build_parser() -> TrlParser:
    """The command line this script takes: the script's, TRL's `SFTConfig` (with AffectVerse's fields) and
    `ModelConfig` arguments, plus `--config` (a recipe YAML)."""
    return TrlParser((ScriptArguments, AffectVerseSFTConfig, ModelConfig))


def run_curriculum(
    stages: list[str], overrides: list[str] | None = None, output_root: str | None = None, before_training=None
) -> list:
    """Run recipe files in order (each with `overrides` appended), each stage starting from the previous stage's
    saved adapter; `output_root` puts stage k's output in `<output_root>/stage<k>` instead of its recipe's folder.
    `before_training(stage, trainer)` sees each stage's trainer as it starts. Returns the trainers."""
    trainers, previous = [], None
    for number, recipe in enumerate(stages, start=1):
        parser = build_parser()
        extra = [] if previous is None else ["--init_adapter", previous]
        if output_root is not None:
            extra += ["--output_dir", os.path.join(output_root, f"stage{number}")]
        script_args, training_args, model_args = parser.parse_args_and_config(
            ["--config", recipe, *extra, *(overrides or [])]
        )
        print(f"curriculum stage {number}/{len(stages)}: {recipe}", flush=True)
        hook = None if before_training is None else (lambda trainer, n=number: before_training(n, trainer))
        trainers.append(main(script_args, training_args, model_args, before_training=hook))
        previous = training_args.output_dir
    return trainers


def curriculum_of(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """`(stages, other arguments)` when `--config` names a curriculum file (a `stages:` list), else None. Read before
    the arguments are parsed: a curriculum file holds no training arguments of its own (the stages do)."""
    if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
        return None
    at = argv.index("--config")
    with open(argv[at + 1], encoding="utf-8") as handle:
        recipe = yaml.safe_load(handle) or {}
    if not recipe.get("stages"):
        return None
    unknown = sorted(set(recipe) - {"stages"})
    if unknown:
        raise ValueError(f"{argv[at + 1]}: a curriculum file lists stages only, got also {unknown}")
    return list(recipe["stages"]), argv[:at] + argv[at + 2 :]


def finish(trainer: AffectVerseSFTTrainer) -> None:
    """End a command-line run: every process waits for the others (rank 0 writes the card, merges, scores), then the
    process group is destroyed. A process that exits with its gloo group alive can abort in the group's threads
    ("terminate called without an active exception", seen in CI on a two-process run that had saved its adapter)."""
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    curriculum = curriculum_of(sys.argv[1:])
    if curriculum is not None:
        finish(run_curriculum(*curriculum)[-1])
    else:
        finish(main(*build_parser().parse_args_and_config()))
