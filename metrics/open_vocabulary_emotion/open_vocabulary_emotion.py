"""Open-vocabulary emotion scores: set precision / recall over emotion-wheel groups (OV-MERD+)."""

import datasets
import evaluate

# shipped beside this script (`python -m metrics.vendor`): the folder works alone, without the AffectVerse package;
# evaluate copies only the files a script imports itself, so the lexicon the wheels import is named here too
from .emotion_lexicon import WHEELS
from .emotion_wheels import resolve_wheels
from .metric_base import CheckedMetric

BUILT_IN_WHEELS = tuple(WHEELS)  # the wheels used when no wheel file or folder is given

_DESCRIPTION = """
For each sample, the predicted words and the true words are mapped to the groups of an emotion wheel. Precision is
|predicted groups & true groups| / |predicted groups| and recall |...| / |true groups|, per sample; both are
averaged over samples, F is computed from those two means, and each of the three is averaged over the wheels. An
empty prediction (or one with no emotion word) scores precision 0 and recall 0. A sample whose true words map to no
group of a wheel is skipped for that wheel and counted.

Built-in wheels: `modeling_affectverse.emotion_lexicon.WHEELS` (Plutchik 2001, Parrott 2001, Geneva Emotion Wheel
2005, written for AffectVerse, lemmatised). A benchmark's own wheels are matched exactly: `wheel_folder` (MER-UniBench's
folder, its rule) or `wheel_file` (a CSV of `wheel,group,word` rows). See `modeling_affectverse/emotion_wheels.py`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str` or `list` of `list` of `str`): answers, comma-separated text or word lists.
    references (`list` of `list` of `str`): the true open-vocabulary labels.
    wheel_file (`str`, *optional*): CSV of `wheel,group,word` rows replacing the built-in wheels.
    wheel_folder (`str`, *optional*): MER-UniBench's wheel folder, applied by its own rule (exact).
    wheel_match (`str`, *optional*): for `wheel_file`: "exact" (default) or "lemma".
    level (`str`, *optional*): for `wheel_folder`: "level1" (default, the benchmark's) or "level2".
Returns:
    precision, recall, f_score (`float`, averaged over wheels); precision_<wheel>, recall_<wheel>, f_score_<wheel>,
    skipped_<wheel> per wheel; num_samples (`int`).
Examples:
    >>> metric = evaluate.load("metrics/open_vocabulary_emotion")
    >>> metric.compute(predictions=["happy, excited"], references=[["joyful"]])["recall"]
    1.0
"""

_CITATION = """
@article{lian2024ovmer, title={Open-vocabulary Multimodal Emotion Recognition: Dataset, Metric, and Benchmark},
  author={Lian, Zheng and others}, journal={arXiv preprint arXiv:2410.01495}, year={2024}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OpenVocabularyEmotion(CheckedMetric):
    def _info(self):
        words = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": words}),
                datasets.Features({"predictions": words, "references": words}),
            ],
        )

    def _compute(
        self, predictions, references, wheel_file=None, wheel_folder=None, wheel_match="exact", level="level1"
    ):
        wheels = resolve_wheels(wheel_file, wheel_folder, wheel_match, level)
        result, per_wheel = {}, []
        for name in wheels.names():
            precisions, recalls = [], []
            for prediction, reference in zip(predictions, references, strict=True):
                truth = wheels.groups(list(reference), name)
                if not truth:
                    continue
                predicted = wheels.groups(prediction if isinstance(prediction, str) else list(prediction), name)
                common = len(predicted & truth)
                precisions.append(common / len(predicted) if predicted else 0.0)
                recalls.append(common / len(truth))
            result[f"skipped_{name}"] = len(references) - len(precisions)
            if not precisions:
                result[f"precision_{name}"] = result[f"recall_{name}"] = result[f"f_score_{name}"] = None
                continue
            precision, recall = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
            f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            result[f"precision_{name}"], result[f"recall_{name}"], result[f"f_score_{name}"] = (
                precision,
                recall,
                f_score,
            )
            per_wheel.append((precision, recall, f_score))
        for index, key in enumerate(("precision", "recall", "f_score")):
            result[key] = sum(w[index] for w in per_wheel) / len(per_wheel) if per_wheel else None
        result["num_samples"] = len(references)
        return result


del CheckedMetric  # evaluate.load takes the first Metric subclass in the module's namespace: this script's
