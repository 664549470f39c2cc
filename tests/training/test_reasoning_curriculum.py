"""Issue 14: reasoning answers (<think>...</think><answer>...</answer>) and the perception -> cognition curriculum."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

import metrics.evaluation as runner
from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.processing_affectverse import extract_answer
from modeling_affectverse.tiny import build_tiny_processor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CURRICULUM = os.path.join(ROOT, "configuration", "recipes", "curriculum.yaml")


def test_the_labels_cover_exactly_the_tagged_answer_and_the_end_of_turn(demo_manifest):
    processor = build_tiny_processor()
    rows = [r for r in load_manifest(demo_manifest)][:2]
    batch = AffectVerseCollator.for_prediction(processor, with_answer=True, answer_format="reasoning")(rows)
    for row, ids, labels in zip(rows, batch["input_ids"], batch["labels"], strict=True):
        labelled = ids[labels != -100]
        expected = f"<think>{row['reasoning']}</think><answer>{row['label']}</answer><|im_end|>"
        assert processor.tokenizer.decode(labelled) == expected
        assert torch.equal(labels[labels != -100], labelled)  # the labels are those tokens, contiguous at the end
    prompt = processor.tokenizer.decode(batch["input_ids"][0])
    assert "between <think> and </think>" in prompt and "between <answer> and </answer>" in prompt


def test_a_row_without_reasoning_is_skipped_and_counted(demo_manifest):
    processor = build_tiny_processor()
    rows = [dict(r) for r in load_manifest(demo_manifest)][:2]
    rows[0]["reasoning"] = None
    collator = AffectVerseCollator.for_prediction(processor, with_answer=True, answer_format="reasoning")
    with pytest.warns(UserWarning, match="no reasoning"):
        batch = collator(rows)
    assert batch["input_ids"].shape[0] == 1 and collator.skipped["no_reasoning"] == 1


@pytest.mark.parametrize(
    "text, answer",
    [
        ("<think>red face, loud voice</think><answer>angry</answer>", "angry"),  # well-formed
        ("<think>cues</think><answer> happy </answer>trailing", "happy"),  # whitespace, text after the answer
        ("<think>cues</think> angry", None),  # no answer tags
        ("angry", None),  # a bare label is not the format
        ("<think>cues</think><answer>ang", None),  # truncated before </answer>
        ("<think>cues", None),  # truncated inside the reasoning
        ("<answer></answer>", None),  # empty answer
        ("<think>x</think><answer></answer></answer>", None),  # a stray closing tag is not an answer
        ("<answer><think>x</think></answer>", None),  # tags inside the answer
        ("<answer>sad</answer> <answer>happy</answer>", "happy"),  # the last complete answer counts
        ("", None),
        (None, None),
    ],
)
def test_answer_extraction(text, answer):
    assert extract_answer(text) == answer


def test_the_runner_counts_malformed_reasoning_outputs_as_unmatched(demo_manifest, tmp_path):
    """The tiny random model does not produce the tags: every output is malformed, scored unmatched, and kept."""
    output = tmp_path / "reasoning"
    argv = ["--model", "tiny", "--manifest", demo_manifest, "--output", str(output), "--answer-format", "reasoning"]
    assert runner.main(argv) == 0
    records = runner.read_predictions(str(output / "predictions.jsonl"))
    assert records and all(r["malformed"] and r["prediction"] == "" and "generated_text" in r for r in records)
    results = json.loads((output / "results.json").read_text())["demo"]["AVT"]["1"]
    assert results["unmatched"] == len(records) and results["accuracy"] == 0.0
    with pytest.raises(SystemExit):
        runner.main([*argv, "--scoring", "closed_set"])


@pytest.mark.slow
def test_the_two_stage_curriculum_runs_and_stage_two_starts_from_stage_one(demo_manifest, tmp_path):
    from training.sft import curriculum_of, run_curriculum

    seen = {}

    def before_training(stage, trainer):
        from peft import get_peft_model_state_dict

        seen[stage] = {k: v.detach().clone() for k, v in get_peft_model_state_dict(trainer.model).items()}

    overrides = ["--train_manifest", demo_manifest, "--demo_data", "", "--max_steps", "2", "--report_to", "none",
                 "--evaluate_held_out", "false", "--save_strategy", "no",
                 "--per_device_train_batch_size", "2"]  # fmt: skip
    stages, _ = curriculum_of(["--config", CURRICULUM])
    first, second = run_curriculum(stages,
                                   overrides, output_root=str(tmp_path), before_training=before_training)  # fmt: skip
    assert first.args.output_dir.endswith("stage1") and second.args.output_dir.endswith("stage2")
    saved = load_file(os.path.join(tmp_path, "stage1", "adapter_model.safetensors"))
    assert seen[2].keys() == saved.keys()
    for key, value in saved.items():  # stage 2 begins with exactly stage 1's adapter
        assert torch.equal(seen[2][key].to(value.dtype), value), key
    assert any(not torch.equal(seen[2][k], seen[1][k]) for k in seen[1])  # which stage 1 had trained
    stage2 = load_file(os.path.join(tmp_path, "stage2", "adapter_model.safetensors"))
    assert any(not torch.equal(stage2[k], saved[k]) for k in saved)  # and stage 2 trained further
    collator = second.data_collator
    assert collator.answer_format == "joint" and first.data_collator.answer_format == "label"


def test_a_curriculum_file_is_recognised_before_the_arguments_are_parsed(tmp_path):
    from training.sft import curriculum_of

    stages, rest = curriculum_of(["--config", CURRICULUM, "--max_steps", "3"])
    assert stages == ["configuration/recipes/curriculum_stage1.yaml", "configuration/recipes/curriculum_stage2.yaml"]
    assert rest == ["--max_steps", "3"]
    assert curriculum_of(["--config", os.path.join(ROOT, "configuration", "recipes", "demo.yaml")]) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [a.yaml]\nmax_steps: 3\n")
    with pytest.raises(ValueError, match="lists stages only"):
        curriculum_of(["--config", str(bad)])


def test_joint_mixes_label_and_reasoning_samples_in_training_and_reasons_in_evaluation(demo_manifest):
    processor = build_tiny_processor()
    rows = [r for r in load_manifest(demo_manifest)][:10]
    collator = AffectVerseCollator.for_training(processor, modality_dropout=0.0, answer_format="joint")
    batch = collator(rows)
    targets = [processor.tokenizer.decode(ids[labels != -100]) for ids, labels in
               zip(batch["input_ids"], batch["labels"], strict=True)]  # fmt: skip
    reasoning = [t.startswith("<think>") for t in targets]
    assert any(reasoning) and not all(reasoning)  # both kinds in one batch
    for row, target, reasons in zip(rows, targets, reasoning, strict=True):
        expected = f"<think>{row['reasoning']}</think><answer>{row['label']}</answer>" if reasons else row["label"]
        assert target == expected + "<|im_end|>"
    again = AffectVerseCollator.for_training(processor, modality_dropout=0.0, answer_format="joint")(rows)
    assert torch.equal(again["input_ids"], batch["input_ids"])  # drawn from the seed, epoch and id: repeatable
    plain = AffectVerseCollator.for_training(processor, modality_dropout=0.0)
    plain(rows)
    assert plain.last_keep_ratio == collator.last_keep_ratio  # the format draw comes after the others
    evaluation = AffectVerseCollator.for_prediction(processor, with_answer=True, answer_format="joint")(rows[:2])
    labelled = evaluation["input_ids"][0][evaluation["labels"][0] != -100]
    assert processor.tokenizer.decode(labelled).startswith("<think>")
