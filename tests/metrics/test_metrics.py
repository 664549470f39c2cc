"""The evaluate metric modules, loaded offline from their folders, against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import os

import evaluate
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from modeling_affectverse.emotion_lexicon import WHEELS, map_to_label, write_wheels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MER = ["worried", "happy", "neutral", "angry", "surprise", "sad"]


def load(name: str):
    return evaluate.load(os.path.join(ROOT, "metrics", name))


@pytest.mark.parametrize("case", range(20))
def test_emotion_classification_equals_scikit_learn(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(5, 40))
    references = [str(x) for x in rng.choice(MER[: int(rng.integers(2, 7))], n)]
    # exact labels, decorated labels ("Sad."), and answers that name no label at all
    predictions = []
    for _ in range(n):
        kind = rng.random()
        label = str(rng.choice(MER))
        predictions.append(label if kind < 0.6 else f"{label.title()}." if kind < 0.85 else "no idea")
    expected_pred = [p.rstrip(".").lower() if p != "no idea" else "<unmatched>" for p in predictions]
    present = [label for label in MER if label in references]
    result = load("emotion_classification").compute(predictions=predictions, references=references, label_set=MER)
    assert result["accuracy"] == pytest.approx(accuracy_score(references, expected_pred))
    assert result["uar"] == pytest.approx(recall_score(references, expected_pred, labels=present, average="macro",
                                                       zero_division=0))  # fmt: skip
    for average in ("macro", "weighted"):
        expected = f1_score(references, expected_pred, labels=present, average=average, zero_division=0)
        assert result[f"{average}_f1"] == pytest.approx(expected)
    assert result["unmatched"] == predictions.count("no idea") and result["num_samples"] == n


def test_emotion_classification_rejects_unknown_references():
    with pytest.raises(ValueError, match=r"references hold labels outside label_set .*\['bored'\]"):
        load("emotion_classification").compute(predictions=["happy"], references=["bored"], label_set=MER)


def test_free_text_is_mapped_by_concept_never_coerced():
    meld = ["anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise"]
    assert map_to_label("The speaker seems joyful.", meld) == "joy"
    assert map_to_label("The speaker seems joyful.", MER) == "happy"
    assert map_to_label("scared", meld) == "fear" and map_to_label("scared", MER) is None  # MER has no fear
    assert map_to_label("not happy", MER) is None and map_to_label("happy or sad", MER) is None


def test_sentiment_polarity_variants_by_hand():
    references = [2.0, -1.0, 0.0, 0.0, 1.5, -2.0]
    predictions = [1.0, 0.5, 0.0, -0.2, -1.0, -0.3]
    result = load("sentiment_polarity").compute(predictions=predictions, references=references)
    # Has0 (>= 0 is positive): sides P,N,P,P,P,N vs P,P,P,N,N,N -> 3 of 6; F1 P = 4/7 (support 4), N = 0.4 (2)
    assert result["has0_acc2"] == pytest.approx(3 / 6)
    assert result["has0_f1"] == pytest.approx((4 * 4 / 7 + 2 * 0.4) / 6)
    # Non0 (zeros dropped, > 0 positive): P,N,P,N vs P,P,N,N -> 2 of 4; both classes F1 0.5
    assert result["non0_acc2"] == pytest.approx(0.5) and result["non0_f1"] == pytest.approx(0.5)
    # SIMS (0 is negative): P,N,N,N,P,N vs P,P,N,N,N,N -> 4 of 6
    assert result["sims_acc2"] == pytest.approx(4 / 6)
    # Acc-3 on round(clip(x, -1, 1)): 1,-1,0,0,1,-1 vs 1,0,0,0,-1,0 -> 3 of 6
    assert result["acc3"] == pytest.approx(3 / 6)
    assert (result["num_nonzero"], result["unmatched"]) == (4, 0)


def test_sentiment_polarity_words():
    words = ["positive", "Negative.", "neutral", "I'd say positive", "positive and negative"]
    result = load("sentiment_polarity").compute(predictions=words, references=[1.0, -2.0, 0.0, 0.5, 1.0])
    assert result["unmatched"] == 1  # names both: scored wrong, not coerced
    assert result["has0_acc2"] == pytest.approx(4 / 5)  # "neutral" is 0, which Has0 counts as positive
    assert result["acc3"] == pytest.approx(3 / 5)  # the 0.5 reference rounds to the neutral class


HIT_PREDICTIONS = ["joyful and excited", "a bit nervous", "calm", "happy", "heartbroken, lonely", "shocked"]
HIT_REFERENCES = ["happy", "worried", "angry", "neutral", "sad", "surprise"]


def test_hit_rate_by_hand():
    result = load("emotion_hit_rate").compute(predictions=HIT_PREDICTIONS, references=HIT_REFERENCES)
    # "calm" misses "angry" everywhere; "neutral" is in no wheel; the Geneva wheel has no "surprise" family
    assert (result["hit_rate_plutchik"], result["skipped_plutchik"]) == (pytest.approx(4 / 5), 1)
    assert (result["hit_rate_parrott"], result["skipped_parrott"]) == (pytest.approx(4 / 5), 1)
    assert (result["hit_rate_geneva"], result["skipped_geneva"]) == (pytest.approx(3 / 4), 2)
    assert result["hit_rate"] == pytest.approx((0.8 + 0.8 + 0.75) / 3)


OV_PREDICTIONS = ["joyful", "worried and angry", ""]
OV_REFERENCES = [["happy", "excited"], ["nervous"], ["sad"]]


def test_open_vocabulary_by_hand():
    result = load("open_vocabulary_emotion").compute(predictions=OV_PREDICTIONS, references=OV_REFERENCES)
    # Plutchik and Parrott: P = (1 + 1/2 + 0) / 3, R = (1 + 1 + 0) / 3; the empty answer scores 0 / 0
    for wheel in ("plutchik", "parrott"):
        assert result[f"precision_{wheel}"] == pytest.approx(0.5)
        assert result[f"recall_{wheel}"] == pytest.approx(2 / 3)
        assert result[f"f_score_{wheel}"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # Geneva: "excited" is interest, not joy: the first sample's recall is 1/2
    assert result["recall_geneva"] == pytest.approx(0.5) and result["f_score_geneva"] == pytest.approx(0.5)
    assert result["f_score"] == pytest.approx((2 * (2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)) + 0.5) / 3)
    as_lists = load("open_vocabulary_emotion").compute(
        predictions=[["joyful"], ["worried", "angry"], []], references=OV_REFERENCES
    )
    assert as_lists == result


def test_external_wheel_file_gives_the_built_in_result(tmp_path):
    """The built-in wheels written to CSV and read back lemmatised (`wheel_match="lemma"`) score the same; read
    exactly (the default for a supplied wheel) they do not: the answers are not lemmas."""
    path = tmp_path / "wheels.csv"
    write_wheels(WHEELS, path)
    hit = load("emotion_hit_rate")
    lemma = {"wheel_file": str(path), "wheel_match": "lemma"}
    built_in = hit.compute(predictions=HIT_PREDICTIONS, references=HIT_REFERENCES)
    assert hit.compute(predictions=HIT_PREDICTIONS, references=HIT_REFERENCES, **lemma) == built_in
    assert hit.compute(predictions=HIT_PREDICTIONS, references=HIT_REFERENCES, wheel_file=str(path)) != built_in
    ov = load("open_vocabulary_emotion")
    assert ov.compute(predictions=OV_PREDICTIONS, references=OV_REFERENCES, **lemma) == ov.compute(
        predictions=OV_PREDICTIONS, references=OV_REFERENCES
    )
    # a one-wheel file: only that wheel is scored
    (tmp_path / "mine.csv").write_text("wheel,group,word\nmine,good,happy\nmine,bad,sad\n")
    mine = hit.compute(predictions=["glad", "sad"], references=["happy", "sad"], wheel_file=str(tmp_path / "mine.csv"))
    assert mine["hit_rate"] == pytest.approx(0.5) and "hit_rate_plutchik" not in mine  # glad is not listed there
    (tmp_path / "broken.csv").write_text("wheel,word\nx,y\n")
    with pytest.raises(ValueError, match=r"broken.csv: missing column\(s\) \['group'\]"):
        hit.compute(predictions=["a"], references=["b"], wheel_file=str(tmp_path / "broken.csv"))


@pytest.mark.parametrize(
    "name, kwargs",
    [("emotion_classification", {"label_set": MER}), ("emotion_hit_rate", {}), ("open_vocabulary_emotion", {}),
     ("sentiment_polarity", {})],
)  # fmt: skip
def test_empty_or_unequal_inputs_are_clear_errors(name, kwargs):
    metric = load(name)
    with pytest.raises(ValueError, match=f"{name}: predictions and references must not be empty"):
        metric.compute(predictions=[], references=[], **kwargs)
    reference = (
        [["happy"]] if name == "open_vocabulary_emotion" else [1.0] if name == "sentiment_polarity" else ["happy"]
    )
    with pytest.raises(ValueError):  # evaluate itself refuses lists of different lengths, naming them
        metric.compute(predictions=["happy", "sad"], references=reference, **kwargs)


def test_evaluate_combine_is_refused_as_the_cards_say():
    """The cards document it: one shared set of arguments cannot serve modules that take different ones."""
    combined = evaluate.combine([load("emotion_classification"), load("emotion_hit_rate")])
    with pytest.raises(ValueError, match=r"emotion_hit_rate does not take \['label_set'\].*evaluate.combine is not"):
        combined.compute(predictions=["happy"], references=["happy"], label_set=MER)
    for name in ("emotion_classification", "emotion_hit_rate", "open_vocabulary_emotion", "sentiment_polarity"):
        card = open(os.path.join(ROOT, "metrics", name, "README.md"), encoding="utf-8").read()
        assert "`evaluate.combine` is not supported" in card
        for section in ("### Inputs", "## Output values", "## Examples", "## Limitations", "## Citation"):
            assert section in card, (name, section)


INCREMENTAL = [  # (module, predictions, references, compute arguments)
    ("emotion_classification", ["happy", "sad", "Angry!"], ["happy", "happy", "angry"], {"label_set": MER}),
    ("emotion_hit_rate", ["happy", "sad", "joyful"], ["happy", "happy", "happy"], {}),
    ("open_vocabulary_emotion", ["happy, sad", "angry"], [["happy"], ["angry", "sad"]], {}),
    ("sentiment_polarity", [1.2, "negative", 0.3], [2.0, -1.0, 0.0], {}),
]


@pytest.mark.parametrize(("name", "predictions", "references", "kwargs"), INCREMENTAL)
def test_add_and_add_batch_give_what_one_compute_gives(name, predictions, references, kwargs):
    """evaluate's incremental API: the checks run on what was gathered, not on the empty call to compute."""
    whole = load(name).compute(predictions=predictions, references=references, **kwargs)
    batched = load(name)
    batched.add_batch(predictions=predictions[:2], references=references[:2])
    batched.add_batch(predictions=predictions[2:], references=references[2:])
    one_by_one = load(name)
    for prediction, reference in zip(predictions, references, strict=True):
        one_by_one.add(prediction=prediction, reference=reference)
    assert batched.compute(**kwargs) == whole == one_by_one.compute(**kwargs)


def test_add_batch_across_two_processes_gives_the_single_process_result(tmp_path):
    """evaluate's distributed mode (num_process=2, process_id): each process adds its half, process 0 scores all."""
    import subprocess
    import sys

    name, predictions, references, kwargs = INCREMENTAL[0]
    whole = load(name).compute(predictions=predictions, references=references, **kwargs)
    script = (
        "import evaluate, json, sys\n"
        "rank = int(sys.argv[1])\n"
        f"metric = evaluate.load({os.path.join(ROOT, 'metrics', name)!r}, num_process=2, process_id=rank, "
        f"experiment_id='two', cache_dir={str(tmp_path)!r})\n"
        f"predictions, references = {predictions!r}, {references!r}\n"
        "metric.add_batch(predictions=predictions[rank::2], references=references[rank::2])\n"
        f"print(json.dumps(metric.compute(**{kwargs!r})))\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(rank)], stdout=subprocess.PIPE, text=True)
            for rank in (0, 1)]  # fmt: skip
    outputs = [run.communicate(timeout=300)[0].strip().splitlines()[-1] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert json.loads(outputs[0]) == whole and outputs[1] == "null"  # only process 0 returns the scores


def test_sentiment_predictions_may_mix_numbers_and_words():
    """The card: numbers and words in one list score each by its kind; the regression scores are then None."""
    metric = load("sentiment_polarity")
    mixed = metric.compute(predictions=[1.0, "positive", "negative"], references=[1.0, 2.0, -1.0])
    assert mixed["non0_acc2"] == 1.0 and mixed["unmatched"] == 0 and mixed["mae"] is None
    numbers = metric.compute(predictions=[1.0, 0.5, -0.5], references=[1.0, 2.0, -1.0])
    assert numbers["mae"] == pytest.approx((0 + 1.5 + 0.5) / 3)


ALONE = """
import importlib.abc, json, sys


class Refused(importlib.abc.MetaPathFinder):  # this process cannot import the project's packages
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling_affectverse", "metrics", "training", "hub_cards", "benchmarks"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, Refused())
import evaluate

metric = evaluate.load(sys.argv[1])
print(json.dumps(metric.compute(predictions=json.loads(sys.argv[2]), references=json.loads(sys.argv[3]),
                                **json.loads(sys.argv[4]))))
"""


@pytest.mark.parametrize(("name", "predictions", "references", "kwargs"), INCREMENTAL)
def test_each_module_folder_copied_alone_loads_without_the_package(name, predictions, references, kwargs, tmp_path):
    """A Hub metric is used this way: the folder alone, in a process where AffectVerse cannot be imported."""
    import shutil
    import subprocess
    import sys

    folder = shutil.copytree(os.path.join(ROOT, "metrics", name), tmp_path / name)
    arguments = [json.dumps(x) for x in (predictions, references, kwargs)]
    run = subprocess.run([sys.executable, "-c", ALONE, str(folder), *arguments], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "HF_HOME": str(tmp_path / "hf")}, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    expected = load(name).compute(predictions=predictions, references=references, **kwargs)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(expected))


def test_the_files_each_module_ships_are_current_copies_of_their_sources():
    """`python -m metrics.vendor` wrote them; a source changed without a new copy fails here."""
    from metrics.vendor import stale

    assert stale() == []
