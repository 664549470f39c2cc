"""Closed-set emotion classification scores: accuracy (WAR), UAR, macro-F1 and weighted-F1 (WAF)."""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score, recall_score

# shipped beside this script (`python -m metrics.vendor`): the folder works alone, without the AffectVerse package
from .emotion_lexicon import map_to_label
from .metric_base import CheckedMetric

UNMATCHED = "<unmatched>"

_DESCRIPTION = """
Scores free-text or label predictions against a closed label set (MER2023/2024, MELD, IEMOCAP).
Each prediction is first normalised to the label set (case, punctuation, inflections and a synonym table written
for AffectVerse: `modeling_affectverse.emotion_lexicon.map_to_label`). A prediction that names no label, or two,
is counted in `unmatched` and scored as wrong for its sample; it is never coerced into a class.

- accuracy: the fraction correct, a.k.a. weighted average recall (WAR).
- uar: unweighted average recall, the mean of per-class recall over the classes present in the references.
- macro_f1: the mean of per-class F1 over the classes present in the references.
- weighted_f1: per-class F1 weighted by class support (WAF), over the same classes.
All four come from scikit-learn.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): model answers, free text allowed ("The person looks joyful.").
    references (`list` of `str`): true labels, each in `label_set`.
    label_set (`list` of `str`): the dataset's classes, e.g. ["worried", "happy", "neutral", "angry", "surprise",
        "sad"].
Returns:
    accuracy, uar, macro_f1, weighted_f1 (`float`), unmatched (`int`), num_samples (`int`).
Examples:
    >>> metric = evaluate.load("metrics/emotion_classification")
    >>> metric.compute(predictions=["Happy.", "sad", "I think angry"], references=["happy", "sad", "sad"],
    ...                label_set=["happy", "sad", "angry"])["accuracy"]
    0.6666666666666666
"""

_CITATION = """
@article{pedregosa2011scikit,
  title={Scikit-learn: Machine Learning in Python},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12}, pages={2825--2830}, year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmotionClassification(CheckedMetric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, label_set=None):
        if not label_set:
            raise ValueError("emotion_classification needs label_set, the dataset's list of classes")
        unknown = sorted(set(references) - set(label_set))
        if unknown:
            raise ValueError(f"references hold labels outside label_set {list(label_set)}: {unknown}")
        mapped = [map_to_label(p, list(label_set)) for p in predictions]
        predicted = [UNMATCHED if m is None else m for m in mapped]
        present = [label for label in label_set if label in set(references)]
        return {
            "accuracy": float(accuracy_score(references, predicted)),
            "uar": float(recall_score(references, predicted, labels=present, average="macro", zero_division=0)),
            "macro_f1": float(f1_score(references, predicted, labels=present, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(references, predicted, labels=present, average="weighted", zero_division=0)),
            "unmatched": sum(m is None for m in mapped),
            "num_samples": len(references),
        }


del CheckedMetric  # evaluate.load takes the first Metric subclass in the module's namespace: this script's
