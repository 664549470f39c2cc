"""The imagination report's baselines (issue 23): ridge by hand, mean-of-past, and probes on nothing score chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.ceilings import probe_accuracy
from metrics.imagination_report import collect, fit_ridge, imagination_report, ridge_predict
from modeling_affectverse.data.collator import MediaOptions
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.tiny import build_tiny_model


def test_ridge_equals_the_hand_computation():
    # one feature x and the intercept, one bin, one target dimension: X^T X + alpha diag(1, 0) = [[6, 3], [3, 3]],
    # X^T y = [13, 9] for y = 1, 3, 5 at x = 0, 1, 2 (alpha = 1): slope 4/3, intercept 5/3
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    y = torch.tensor([1.0, 3.0, 5.0])[:, None, None]  # (P, Q=1, W=1)
    weights = fit_ridge(x, y, None, alpha=1.0)
    torch.testing.assert_close(weights[0, :, 0], torch.tensor([4 / 3, 5 / 3]))
    torch.testing.assert_close(ridge_predict(torch.tensor([[3.0, 1.0]]), weights)[0, 0, 0], torch.tensor(17 / 3))
    # a row without the bin (past the clip's end) is left out of that bin's fit: the same weights without it
    extra_x, extra_y = torch.cat([x, torch.tensor([[9.0, 1.0]])]), torch.cat([y, torch.tensor([[[-50.0]]])])
    bins = torch.tensor([[True], [True], [True], [False]])
    torch.testing.assert_close(fit_ridge(extra_x, extra_y, bins, alpha=1.0), weights)


def test_a_probe_on_a_constant_feature_scores_chance():
    labels = np.array(["a", "b", "c"] * 20)
    accuracy = probe_accuracy(np.ones((60, 4)), labels, np.ones((30, 4)), labels[:30])
    assert accuracy == pytest.approx(1 / 3)
    informative = np.eye(3)[np.searchsorted(["a", "b", "c"], labels)]  # one-hot of the label
    assert probe_accuracy(informative, labels, informative[:30], labels[:30]) == 1.0


def test_report_scores_every_baseline_and_residual_starts_at_copy_last(demo_manifest):
    rows = load_manifest(demo_manifest)
    train = [row for row in rows if row["split"] == "train"]
    held_out = [row for row in rows if row["split"] != "train"]
    model, processor = build_tiny_model(seed=0, ewm_forecast="residual")
    report = imagination_report(model, processor, held_out, keep_ratios=(0.5,), fit_rows=train)
    for name in ("copy_last", "set_mean", "mean_of_past", "ridge"):
        assert report[f"skill_{name}"] == pytest.approx(report["ewm_loss"] / report[f"{name}_loss"])
    assert report["skill_copy_last"] == pytest.approx(1.0, abs=1e-6)  # the residual forecast at initialisation
    assert report["mean_of_past_loss"] != pytest.approx(report["copy_last_loss"])


def test_probe_features_are_per_clip_and_do_not_depend_on_the_batch(demo_manifest):
    rows = [row for row in load_manifest(demo_manifest)][:5]
    model, processor = build_tiny_model(seed=0)
    _, batched = collect(model, processor, rows, (0.5,), batch_size=4, media=MediaOptions(store={}))
    _, alone = collect(model, processor, rows, (0.5,), batch_size=1)
    for name in ("belief", "pooled"):
        assert batched["0.5"][name].shape[0] == len(rows)
        torch.testing.assert_close(batched["0.5"][name], alone["0.5"][name], atol=1e-5, rtol=1e-4)
    assert batched["0.5"]["pooled"].abs().sum() > 0 and batched["0.5"]["belief"].abs().sum() > 0
    # the report fits both probes on the training clips and scores the held-out ones, per rho
    report = imagination_report(model, processor, rows[3:], keep_ratios=(0.5,), fit_rows=rows[:3])
    assert set(report["probes"]) == {"0.5"}
    assert all(0.0 <= report["probes"]["0.5"][name] <= 1.0 for name in ("belief", "pooled"))
