"""Statistics for the miniature (issue 23): paired intervals over seeds, a bootstrap over test clips, McNemar.

The primary endpoint is fixed before the sweep runs: cut-clip accuracy at rho = 0.5 under A+V+T, `full` minus the
better of `pooling` and `lora_cut` (the comparator is the one with the higher mean over seeds, chosen once). Its 95%
interval is given two ways: a t interval over the seeds' paired differences, and a percentile bootstrap over test
clips (the same clips resampled for every seed and both variants).

    from metrics.statistics import t_interval, paired_bootstrap, mcnemar
"""

from __future__ import annotations

import math

import numpy as np


def t_interval(differences, level: float = 0.95) -> dict:
    """Mean and two-sided `level` t interval of paired differences (one per seed). One difference: no interval."""
    from scipy import stats

    values = np.asarray(differences, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return {"mean": mean, "low": None, "high": None, "n": int(len(values))}
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(len(values))}


def paired_bootstrap(correct_a, correct_b, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile interval of mean accuracy(a) - accuracy(b) over resampled test clips.

    `correct_a`, `correct_b`: `(seeds, clips)` 0/1 arrays over the same clips in the same order; each resample draws
    clip indices once and applies them to every seed of both, so the pairing by seed and by clip is kept."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"correct_a and correct_b must be (seeds, clips) of one shape, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    clips = a.shape[1]
    draws = rng.integers(0, clips, size=(resamples, clips))
    differences = (a[:, draws].mean(axis=(0, 2)) - b[:, draws].mean(axis=(0, 2))) if clips else np.zeros(resamples)
    low, high = np.quantile(differences, [0.5 - level / 2, 0.5 + level / 2])
    return {"mean": float(a.mean() - b.mean()), "low": float(low), "high": float(high), "resamples": resamples}


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test of two single models on the same clips: the discordant counts and the two-sided p-value
    (a binomial test of `a right, b wrong` among the discordant clips at 1/2)."""
    from scipy import stats

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p}


__all__ = ["mcnemar", "paired_bootstrap", "t_interval"]
