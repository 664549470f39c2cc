"""Evidence that it works: the demo recipe learns the held-out clips, and the imagination learns something real.

One demo-recipe run (the quickstart's recipe, on the quickstart's 600 clips) is shared by the tests below; it is the
slowest part of the suite (about two minutes on 2 cores).
"""

from __future__ import annotations

import pytest

from metrics.imagination_report import imagination_report
from modeling_affectverse.data.demo_data import QUICKSTART_CLIPS, generate_demo_dataset
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.tiny import build_tiny_model
from tests.training.conftest import parse_recipe
from training.sft import held_out_accuracy, main

STEPS = 300  # the demo recipe's (configuration/recipes/demo.yaml), as the quickstart trains


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-full")
    manifest = generate_demo_dataset(str(folder), QUICKSTART_CLIPS, seed=0, progress=False, workers=2)["emotion"]
    args = parse_recipe("--train_manifest", manifest, "--output_dir", str(folder / "out"), "--max_steps", str(STEPS))
    trainer = main(*args)
    rows = load_manifest(manifest, cache_dir=str(folder / "cache"))
    held_out = rows.filter(lambda row: row["split"] == "test")
    initial, processor = build_tiny_model(seed=0)
    initial.init_ewm(trainer.args.seed)  # the EWM as this run started
    return {
        "trainer": trainer,
        "held_out": held_out,
        "initial": imagination_report(initial, processor, held_out),
        "trained": imagination_report(trainer.model, trainer.processing_class, held_out),
    }


@pytest.mark.slow
def test_demo_recipe_learns_the_held_out_clips(demo_run):
    trainer = demo_run["trainer"]
    accuracy, chance, count = held_out_accuracy(trainer.model, trainer.processing_class, demo_run["held_out"])
    assert count == len(demo_run["held_out"]) >= 40
    assert chance == pytest.approx(1 / 6)
    assert accuracy >= 0.8  # the quickstart's claim (README)


@pytest.mark.slow
def test_imagination_beats_copy_last_mean_of_past_and_set_mean_and_its_targets_do_not_collapse(demo_run):
    trained, initial = demo_run["trained"], demo_run["initial"]
    assert trained["pairs"] == initial["pairs"] > 0
    assert trained["skill_copy_last"] < 1.0  # better than copying the last observed token
    assert trained["skill_set_mean"] < 1.0  # better than the held-out set's mean target (a constant)
    assert trained["skill_mean_of_past"] < 1.0  # better than the mean observed token (issue 23)
    # the default forecaster (ewm_forecast="absolute", chosen on validation) is scored against the ridge forecaster
    # in the ablation runner's report and docs/miniature, not here: that ratio is reported, not asserted
    assert trained["ewm_loss"] < initial["ewm_loss"]
    # Targets come from a frozen projection of the base encoders' features (the demo recipe's adapters on the vision
    # merger and the audio projection are switched off for them: test_partial_observation). The original target (the
    # trained, detached down-projection) went from 0.38 to 0.97 mean cross-clip cosine in 60 demo steps; here it may
    # not rise by more than 0.05, nor reach 0.9; and the predictions must not be one constant either.
    assert trained["target_similarity"] <= initial["target_similarity"] + 0.05
    assert trained["target_similarity"] < 0.9
    assert trained["prediction_similarity"] < 0.99


@pytest.mark.slow
def test_training_logs_the_skill_scores(demo_run):
    logs = [entry for entry in demo_run["trainer"].state.log_history if "imagination_loss" in entry]
    assert logs and all("imagination_skill_copy_last" in e for e in logs)
    # similarity and the batch-mean skill need two cut samples in the step (a quarter of the samples are cut)
    assert any("imagination_target_similarity" in e and "imagination_skill_batch_mean" in e for e in logs)


@pytest.mark.slow
def test_generated_answers_end_at_the_label(demo_run):
    """The runner's generate mode on the demo-trained model: generation stops at <|im_end|>, so no answer carries
    text after its label (issue 15.1)."""
    from metrics.evaluation import predict_batch
    from modeling_affectverse.data.collator import AffectVerseCollator

    trainer, rows = demo_run["trainer"], demo_run["held_out"]
    collator = AffectVerseCollator.for_prediction(trainer.processing_class)
    batch = [rows[i] for i in range(16)]
    answers = [r["prediction"] for r in predict_batch(trainer.model, collator, batch, "generate")]
    labels = batch[0]["label_set"]
    trailing = [a for a in answers if any(a.startswith(label) and a != label for label in labels)]
    assert not trailing
    assert sum(a in labels for a in answers) >= 12  # and they are labels, mostly the right ones' kind
