"""The miniature's statistics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.statistics import mcnemar, paired_bootstrap, t_interval


def test_t_interval_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653: half-width 4.302653 / sqrt(3)
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval["mean"] == 2.0
    assert interval["high"] - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
    assert t_interval([0.5])["low"] is None  # one seed: no interval


def test_bootstrap_keeps_the_pairing():
    a = np.array([[1, 1, 0, 1], [1, 0, 1, 1]])
    interval = paired_bootstrap(a, a, resamples=200)
    assert interval["mean"] == interval["low"] == interval["high"] == 0.0  # identical models: no spread at all
    b = 1 - a  # b is right exactly where a is wrong
    interval = paired_bootstrap(a, b, resamples=500)
    assert interval["mean"] == pytest.approx(0.5) and interval["low"] <= 0.5 <= interval["high"]
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap(a, a[:, :2])


def test_mcnemar_by_hand():
    a = np.array([1, 1, 1, 1, 1, 0, 1, 1])
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    result = mcnemar(a, b)
    assert (result["only_a"], result["only_b"]) == (5, 0)
    assert result["p_value"] == pytest.approx(2 * 0.5**5)  # two-sided exact binomial of 5 of 5 discordant
    assert mcnemar(a, a)["p_value"] == 1.0
