"""Sentiment polarity scores under each convention in use: Has0 / Non0 Acc-2 and F1, Acc-3, and the SIMS one."""

import math
import re

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score

# shipped beside this script (`python -m metrics.vendor`): the folder works alone, without the AffectVerse package
from .metric_base import CheckedMetric

UNMATCHED = "<unmatched>"
WORDS = {"positive": 1.0, "negative": -1.0, "neutral": 0.0}

_DESCRIPTION = """
Polarity scores for CMU-MOSI, CMU-MOSEI, CH-SIMS and CH-SIMS v2, each under its own name, because the papers'
"Acc-2" means different things:

- has0_acc2 / has0_f1: all samples; positive means >= 0 (MMSA's "Has0"). F1 is weighted by support.
- non0_acc2 / non0_f1: samples whose reference is not 0; positive means > 0 (MMSA's "Non0"). non0_f1 is also what
  MER-UniBench reports as "weighted F1" for sentiment sets.
- acc3: three classes, negative / neutral / positive, from round(clip(x, -1, 1)).
- sims_acc2 / sims_f1: all samples; 0 counts as negative (positive means > 0), the CH-SIMS convention.

Predictions are numbers or words: "positive" (1), "negative" (-1), "neutral" (0), also inside a sentence. A word
answer naming none or several of these is `unmatched`: scored wrong, never coerced. `word_rule="mer_unibench"`
follows MER-UniBench instead: an answer that is not exactly "positive", "negative" or "neutral" (after lower-casing
and stripping) counts as 0 (neutral), never unmatched.

With numeric predictions, the regression scores MMSA's `metricsTop.py` reports beside Acc-2 (None when any
prediction is a word):

- mae: mean |prediction - reference|; corr: Pearson correlation;
- acc7 / acc5: predictions and references clipped to [-3, 3] / [-2, 2], rounded (half to even), accuracy;
- sims_acc3 / sims_acc5: both clipped to [-1, 1] and binned at (-1.01, -0.1, 0.1, 1.01] /
  (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01] (MMSA's CH-SIMS classes), accuracy; sims_mae / sims_corr on the clipped values.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float` or `str`): predicted scores, or polarity words.
    references (`list` of `float`): true sentiment scores (e.g. MOSI in [-3, 3], SIMS in [-1, 1]).
    word_rule (`str`, *optional*): "strict" (default: unknown words are unmatched) or "mer_unibench" (they are 0).
Returns:
    has0_acc2, has0_f1, non0_acc2, non0_f1, acc3, sims_acc2, sims_f1 (`float`), unmatched, num_samples,
    num_nonzero (`int`); mae, corr, acc5, acc7, sims_acc3, sims_acc5, sims_mae, sims_corr (`float`, None with word
    predictions).
Examples:
    >>> metric = evaluate.load("metrics/sentiment_polarity")
    >>> metric.compute(predictions=[1.2, -0.5, 0.3], references=[2.0, -1.0, 0.0])["non0_acc2"]
    1.0
"""

_CITATION = """
@inproceedings{yu2021learning,
  title={Learning Modality-Specific Representations with Self-Supervised Multi-Task Learning for Multimodal
         Sentiment Analysis},
  author={Yu, Wenmeng and Xu, Hua and Yuan, Ziqi and Wu, Jiele},
  booktitle={AAAI}, year={2021}
}
"""


# numbers travel as tagged strings, so that one list (or successive `add` calls) may mix numbers and words: evaluate
# casts every prediction to the type of the first it sees
NUMBER = "\x00number:"


def _tagged(prediction):
    """A numeric prediction as its tagged string; a word answer as it is."""
    if isinstance(prediction, int | float) and not isinstance(prediction, bool):
        return f"{NUMBER}{float(prediction)!r}"
    return prediction


def _untagged(prediction):
    """The number a tagged string stands for; any other prediction as it is."""
    if isinstance(prediction, str) and prediction.startswith(NUMBER):
        return float(prediction[len(NUMBER) :])
    return prediction


def _score(prediction, word_rule: str = "strict") -> float | None:
    if isinstance(prediction, int | float):
        return float(prediction) if math.isfinite(prediction) else None
    if word_rule == "mer_unibench":  # exactly one of the three words, else neutral
        return WORDS.get(str(prediction).strip().lower(), 0.0)
    named = {WORDS[w] for w in re.findall(r"[a-z]+", str(prediction).lower()) if w in WORDS}
    return named.pop() if len(named) == 1 else None


def _binned(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """MMSA's CH-SIMS classes: index i for values in (edges[i], edges[i + 1]]."""
    classes = np.full(values.shape, -1.0)
    for i in range(len(edges) - 1):
        classes[(values > edges[i]) & (values <= edges[i + 1])] = i
    return classes


def _regression(predictions: list, truth: list[float]) -> dict:
    """MAE, correlation and multi-class accuracies of numeric predictions (MMSA's definitions); None with words."""
    names = ("mae", "corr", "acc5", "acc7", "sims_acc3", "sims_acc5", "sims_mae", "sims_corr")
    if not all(isinstance(p, int | float) and math.isfinite(p) for p in predictions):
        return dict.fromkeys(names)
    pred, true = np.asarray(predictions, dtype=np.float64), np.asarray(truth, dtype=np.float64)

    def accuracy(a, b):
        return float(np.mean(np.round(a) == np.round(b)))

    def corr(a, b):
        return float(np.corrcoef(a, b)[0][1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else None

    pred1, true1 = np.clip(pred, -1, 1), np.clip(true, -1, 1)
    three, five = [-1.01, -0.1, 0.1, 1.01], [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]
    return {
        "mae": float(np.mean(np.abs(pred - true))),
        "corr": corr(pred, true),
        "acc5": accuracy(np.clip(pred, -2, 2), np.clip(true, -2, 2)),
        "acc7": accuracy(np.clip(pred, -3, 3), np.clip(true, -3, 3)),
        "sims_acc3": float(np.mean(_binned(pred1, three) == _binned(true1, three))),
        "sims_acc5": float(np.mean(_binned(pred1, five) == _binned(true1, five))),
        "sims_mae": float(np.mean(np.abs(pred1 - true1))),
        "sims_corr": corr(pred1, true1),
    }


def _side(value: float | None, positive) -> str:
    return UNMATCHED if value is None else ("positive" if positive(value) else "negative")


def _three(value: float | None) -> str:
    return UNMATCHED if value is None else str(int(round(min(1.0, max(-1.0, value)))))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SentimentPolarity(CheckedMetric):
    def _info(self):
        reference = datasets.Value("float64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("float64"), "references": reference}),
                datasets.Features({"predictions": datasets.Value("string"), "references": reference}),
            ],
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """`compute`, numbers and words allowed in one list (evaluate appends the input description here)."""
        tagged = None if predictions is None else [_tagged(p) for p in predictions]
        return super().compute(predictions=tagged, references=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """`add_batch`, numbers and words allowed in one list."""
        tagged = None if predictions is None else [_tagged(p) for p in predictions]
        return super().add_batch(predictions=tagged, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """`add`, a number or a word."""
        return super().add(prediction=_tagged(prediction), reference=reference, **kwargs)

    def _compute(self, predictions, references, word_rule="strict"):
        predictions = [_untagged(p) for p in predictions]
        if word_rule not in ("strict", "mer_unibench"):
            raise ValueError(f"word_rule must be 'strict' or 'mer_unibench', got {word_rule!r}")
        scores = [_score(p, word_rule) for p in predictions]
        truth = [float(r) for r in references]
        sides = ["negative", "positive"]

        def acc_f1(keep, positive):
            y_true = [_side(t, positive) for t, k in zip(truth, keep, strict=True) if k]
            y_pred = [_side(s, positive) for s, k in zip(scores, keep, strict=True) if k]
            if not y_true:
                return float("nan"), float("nan")
            f1 = f1_score(y_true, y_pred, labels=sides, average="weighted", zero_division=0)
            return float(accuracy_score(y_true, y_pred)), float(f1)

        everyone = [True] * len(truth)
        nonzero = [t != 0 for t in truth]
        has0_acc2, has0_f1 = acc_f1(everyone, lambda x: x >= 0)
        non0_acc2, non0_f1 = acc_f1(nonzero, lambda x: x > 0)
        sims_acc2, sims_f1 = acc_f1(everyone, lambda x: x > 0)
        acc3 = float(accuracy_score([_three(t) for t in truth], [_three(s) for s in scores]))
        return {
            "has0_acc2": has0_acc2,
            "has0_f1": has0_f1,
            "non0_acc2": non0_acc2,
            "non0_f1": non0_f1,
            "acc3": acc3,
            "sims_acc2": sims_acc2,
            "sims_f1": sims_f1,
            "unmatched": sum(s is None for s in scores),
            "num_samples": len(truth),
            "num_nonzero": sum(nonzero),
            **_regression(predictions, truth),
        }


del CheckedMetric  # evaluate.load takes the first Metric subclass in the module's namespace: this script's
