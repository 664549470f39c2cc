"""Unlabelled clips train the world model (issue 23): through the imagination loss only, never the LM loss."""

from __future__ import annotations

import math
import os

import pytest
import torch

from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.data.manifest import load_manifest


@pytest.fixture(scope="module")
def trained(demo_manifest, tmp_path_factory):
    """Two steps of the demo recipe with the unlabelled pool mixed in half and half."""
    from tests.training.conftest import parse_recipe
    from training.sft import main

    pool = os.path.join(os.path.dirname(demo_manifest), "unlabeled.jsonl")
    output = str(tmp_path_factory.mktemp("unlabeled-run"))
    args = parse_recipe(
        "--train_manifest", demo_manifest, "--output_dir", output, "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--unlabeled_manifest", pool, "--unlabeled_ratio", "0.25",
    )  # fmt: skip
    return main(*args), pool


def rows_of(path: str, split: str) -> list[dict]:
    return [row for row in load_manifest(path) if row["split"] == split]


def test_sft_mixes_the_pool_in_at_the_ratio(trained, demo_manifest):
    trainer, pool = trained
    labelled = len(rows_of(demo_manifest, "train"))
    unlabeled = [row for row in trainer.train_dataset if row["unlabeled"]]
    assert len(trainer.train_dataset) == labelled + len(unlabeled)
    assert len(unlabeled) == round(labelled * 0.25 / 0.75)  # 8 labelled: 3 of the pool's 4
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)


def test_unlabeled_rows_get_no_answer_and_no_label_but_a_future(trained):
    trainer, pool = trained
    processor = trainer.processing_class
    collator = AffectVerseCollator.for_training(processor, keep_ratio_range=(0.5, 0.5), modality_dropout=0.0)
    batch = collator(rows_of(pool, "unlabeled")[:2])
    assert collator.last_kept == [0, 1]  # none skipped for want of an answer
    assert torch.all(batch["labels"] == -100)
    prompts = processor.tokenizer.batch_decode(batch["input_ids"])
    # the prompt ends at the assistant header and its belief tokens (left padding: nothing after them)
    assert all(prompt.replace("<|belief|>", "").endswith("<|im_start|>assistant\n") for prompt in prompts)
    assert "future_input_features" in batch and "future_pixel_values_videos" in batch  # the imagination's targets


def test_unlabeled_rows_add_zero_lm_loss_and_train_the_ewm(trained, demo_manifest):
    trainer, pool = trained
    model, processor = trainer.model, trainer.processing_class
    collator = AffectVerseCollator.for_training(processor, keep_ratio_range=(0.5, 0.5), modality_dropout=0.0)
    unlabeled, labelled = rows_of(pool, "unlabeled")[:2], rows_of(demo_manifest, "train")[:2]
    model.eval()  # no dropout: the two LM losses below must be comparable
    with torch.no_grad():
        alone = model(**collator(labelled)).loss
        mixed = model(**collator(labelled + unlabeled)).loss
    torch.testing.assert_close(mixed, alone, atol=1e-5, rtol=1e-5)  # the unlabeled rows add nothing to the LM term

    model.train()
    model.zero_grad(set_to_none=True)
    batch = collator(unlabeled)
    trainer._imagination_targets = torch.tensor(trainer._targets(batch))
    loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(0))
    assert torch.isfinite(loss) and loss > 0  # the imagination term alone
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    ewm = [g for name, g in grads.items() if ".ewm." in name and g is not None]
    lora = [g for name, g in grads.items() if "lora_" in name and "language_model" in name]
    assert ewm and sum(float(g.abs().sum()) for g in ewm) > 0
    assert all(g is None or float(g.abs().sum()) == 0 for g in lora)  # no answer: nothing reaches the LLM's LoRA
    model.zero_grad(set_to_none=True)


def test_unlabeled_rows_are_always_cut_and_the_labelled_draws_do_not_change(trained, demo_manifest):
    """A whole unlabeled clip has no answer and no future: it would add no loss. The whole-clip draw skips it, and
    the labelled rows' draws (one generator per row) are the same with or without unlabeled rows in the batch."""
    trainer, pool = trained
    processor = trainer.processing_class
    unlabeled, labelled = rows_of(pool, "unlabeled")[:2], rows_of(demo_manifest, "train")[:4]

    def collator(probability: float) -> AffectVerseCollator:
        return AffectVerseCollator.for_training(
            processor, keep_ratio_range=(0.5, 0.5), modality_dropout=0.0, whole_clip_probability=probability
        )

    always = collator(1.0)
    always(labelled[:2] + unlabeled)
    assert always.last_keep_ratio == [1.0, 1.0, 0.5, 0.5]  # labelled rows whole, unlabeled rows still cut
    assert "future_input_features" in always(unlabeled)  # their futures are the imagination's targets

    some = collator(0.5)
    some(labelled)
    alone = list(some.last_keep_ratio)
    some(labelled + unlabeled)
    assert some.last_keep_ratio[: len(labelled)] == alone and some.last_keep_ratio[len(labelled) :] == [0.5, 0.5]
