"""HIT rate after emotion-wheel grouping (MER-UniBench's score for basic emotion sets)."""

import datasets
import evaluate

# shipped beside this script (`python -m metrics.vendor`): the folder works alone, without the AffectVerse package;
# evaluate copies only the files a script imports itself, so the lexicon the wheels import is named here too
from .emotion_lexicon import WHEELS
from .emotion_wheels import resolve_wheels
from .metric_base import CheckedMetric

BUILT_IN_WHEELS = tuple(WHEELS)  # the wheels used when no wheel file or folder is given

_DESCRIPTION = """
A prediction "hits" when one of the wheel groups its emotion words fall into is the group of the true label. This
lets open-vocabulary answers ("nervous and tense") be scored against basic labels ("worried"). The score is computed
per wheel and averaged over wheels. Samples whose true label maps to no group of a wheel (e.g. "neutral", which no
wheel holds) are skipped for that wheel and counted, never scored.

Built-in wheels (`modeling_affectverse.emotion_lexicon.WHEELS`, written for AffectVerse from Plutchik 2001,
Parrott 2001 and Scherer's Geneva Emotion Wheel 2005; sources in that file), matched through a lemmatiser. A
benchmark's own wheels are matched exactly: `wheel_folder` (MER-UniBench's folder: `format.csv`, `synonym.xlsx`,
`wheel1..5.xlsx`, applied by its rule) or `wheel_file` (a CSV with columns `wheel,group,word`; `wheel_match="lemma"`
lemmatises it instead). See `modeling_affectverse/emotion_wheels.py`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): answers, one emotion word, a comma-separated list or a sentence.
    references (`list` of `str`): true labels.
    wheel_file (`str`, *optional*): CSV of `wheel,group,word` rows replacing the built-in wheels.
    wheel_folder (`str`, *optional*): MER-UniBench's wheel folder, applied by its own rule (exact).
    wheel_match (`str`, *optional*): for `wheel_file`: "exact" (default) or "lemma".
    level (`str`, *optional*): for `wheel_folder`: "level1" (default, the benchmark's) or "level2".
Returns:
    hit_rate (`float`): mean over wheels of the per-wheel hit rates (wheels where every sample was skipped are left
        out); hit_rate_<wheel> (`float` or None) and skipped_<wheel> (`int`) per wheel; num_samples (`int`).
Examples:
    >>> metric = evaluate.load("metrics/emotion_hit_rate")
    >>> metric.compute(predictions=["joyful"], references=["happy"])["hit_rate"]
    1.0
"""

_CITATION = """
@article{plutchik2001nature, title={The Nature of Emotions}, author={Plutchik, Robert},
  journal={American Scientist}, volume={89}, number={4}, pages={344--350}, year={2001}}
@book{parrott2001emotions, title={Emotions in Social Psychology}, editor={Parrott, W. Gerrod},
  publisher={Psychology Press}, year={2001}}
@article{scherer2005emotions, title={What are emotions? And how can they be measured?}, author={Scherer, Klaus R.},
  journal={Social Science Information}, volume={44}, number={4}, pages={695--729}, year={2005}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmotionHitRate(CheckedMetric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self, predictions, references, wheel_file=None, wheel_folder=None, wheel_match="exact", level="level1"
    ):
        wheels = resolve_wheels(wheel_file, wheel_folder, wheel_match, level)
        result, rates = {}, []
        for name in wheels.names():
            hits = evaluated = skipped = 0
            for prediction, reference in zip(predictions, references, strict=True):
                truth = wheels.groups([reference], name)
                if not truth:
                    skipped += 1
                    continue
                evaluated += 1
                hits += bool(truth & wheels.groups(prediction, name))
            rate = hits / evaluated if evaluated else None
            result[f"hit_rate_{name}"], result[f"skipped_{name}"] = rate, skipped
            if rate is not None:
                rates.append(rate)
        result["hit_rate"] = sum(rates) / len(rates) if rates else None
        result["num_samples"] = len(references)
        return result


del CheckedMetric  # evaluate.load takes the first Metric subclass in the module's namespace: this script's
