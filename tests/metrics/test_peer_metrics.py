"""Metrics that reproduce the peers they name: MER-UniBench's wheel rule (exact look-up), its sentiment word rule, and
MMSA's regression scores. Expected values are worked out by hand from the peers' definitions, not by the code."""

from __future__ import annotations

import csv
import math
import os

import evaluate
import pytest
from openpyxl import Workbook

from modeling_affectverse.emotion_wheels import ExactWheels, LexiconWheels, MerUniBenchWheels, split_answer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name: str):
    return evaluate.load(os.path.join(ROOT, "metrics", name))


def sheet(path, header, rows):
    book = Workbook()
    book.active.append(header)
    for row in rows:
        book.active.append(list(row))
    book.save(path)


@pytest.fixture
def mer_folder(tmp_path):
    """A few words in MER-UniBench's layout: a multi-word form ("very nervous"), a form shared by two entries
    ("fearful": a form of both "scared" and "afraid"), a synonym of two wheel words ("glad"), blank "same as above"
    cells, and a second wheel that groups differently."""
    first = [
        ("joy", "cheerfulness", "amusement"),
        (None, None, "delight"),
        (None, "contentment", "pleasure"),
        ("fear", "horror", "alarm"),
        (None, "nervousness", "anxiety"),
        ("sadness", "suffering", "hurt"),
    ]
    second = [("happiness", "fun", "amusement"), (None, None, "delight"), (None, None, "pleasure"),
              ("worry", "unease", "anxiety"), (None, None, "alarm"), ("sorrow", "pain", "hurt")]  # fmt: skip
    for index in range(1, 6):
        sheet(tmp_path / f"wheel{index}.xlsx", ["level1", "level2", "level3"], second if index == 2 else first)
    sheet(tmp_path / "synonym.xlsx", ["word_run1", "synonym_run1", "word_run2", "synonym_run2"], [
        ("delight", "['joyful', 'glad']", "alarm", "['scared', 'afraid']"),
        ("anxiety", "['nervous', 'uneasy']", "amusement", "['glad']"),
        ("hurt", "['heartbroken', 'broken hearted']", None, None),
    ])  # fmt: skip
    with open(tmp_path / "format.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "format"])
        for name, forms in [("joyful", "['joyfully', 'joyfulness']"), ("nervous", "['nervously', 'very nervous']"),
                            ("scared", "['fearful']"), ("afraid", "['fearful', 'afraidly']"), ("glad", ""),
                            ("heartbroken", "['heartbrokenly']"), ("delight", "")]:  # fmt: skip
            writer.writerow([name, forms])
    return tmp_path


def test_exact_mode_follows_mer_unibench_rule(mer_folder):
    wheels = MerUniBenchWheels(mer_folder)
    assert wheels.names() == ["wheel1", "wheel2", "wheel3", "wheel4", "wheel5"]
    expected = {  # word: (wheel1 group, wheel2 group), by hand from the rule
        "joyfulness": ("joy", "happiness"),  # form of joyful -> delight
        "very nervous": ("fear", "worry"),  # multi-word form of nervous -> anxiety
        "fearful": ("fear", "worry"),  # a form of scared and of afraid -> alarm
        "glad": ("joy", "happiness"),  # synonym of delight and amusement: sorted, amusement first
        "heartbroken": ("sadness", "sorrow"),
        "nervous and tense": (None, None),  # not a written form (no splitting on "and")
        "uneasy": (None, None),  # a synonym, but not in format.csv: the rule drops it
    }
    for word, (first, second) in expected.items():
        assert wheels.group_of(word, "wheel1") == first, word
        assert wheels.group_of(word, "wheel2") == second, word
    assert wheels.groups("Joyfulness, 'very nervous'", "wheel1") == {"joy", "fear"}
    assert split_answer("['Glad', \"fearful\", very nervous]") == ["glad", "fearful", "very nervous"]
    level2 = MerUniBenchWheels(mer_folder, level="level2")
    assert level2.group_of("glad", "wheel1") == "cheerfulness" and level2.group_of("fearful", "wheel1") == "horror"


def test_lemmatising_mode_differs_on_the_same_words(mer_folder, tmp_path):
    """The same wheel as a CSV, matched the old way: phrases fall back to single words, words are lemmatised."""
    wheels = MerUniBenchWheels(mer_folder)
    rows = [("wheel1", wheels.maps["wheel1"][word], word) for word in sorted(wheels.maps["wheel1"])]
    path = tmp_path / "wheel1.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("wheel", "group", "word"), *rows])
    from modeling_affectverse.emotion_lexicon import load_wheels

    lemmatised, exact = LexiconWheels(load_wheels(path)), ExactWheels(path)
    answer = "a bit of delights, joyfulness"
    assert exact.groups(answer, "wheel1") == set()  # no such written words in this wheel
    assert lemmatised.groups(answer, "wheel1") == {"joy"}  # "delights" -> delight, by the lemmatiser
    assert wheels.groups(answer, "wheel1") == {"joy"}  # the benchmark knows "joyfulness" as a form


def test_hit_rate_and_open_vocabulary_with_the_benchmark_folder(mer_folder):
    hit = load("emotion_hit_rate").compute(
        predictions=["joyfulness", "very nervous", "uneasy"], references=["glad", "fearful", "heartbroken"],
        wheel_folder=str(mer_folder),
    )  # fmt: skip
    # per wheel: hit, hit, miss (uneasy counts for nothing) -> 2/3 on all five wheels
    assert hit["hit_rate"] == pytest.approx(2 / 3) and hit["hit_rate_wheel2"] == pytest.approx(2 / 3)
    ov = load("open_vocabulary_emotion").compute(
        predictions=["glad, heartbroken"], references=[["joyful", "fearful"]], wheel_folder=str(mer_folder)
    )
    # pred {joy, sadness}, truth {joy, fear}: precision 1/2, recall 1/2 on every wheel
    assert ov["precision"] == pytest.approx(0.5) and ov["recall"] == pytest.approx(0.5)
    assert ov["f_score"] == pytest.approx(0.5)


def test_sentiment_word_rule_of_mer_unibench():
    metric = load("sentiment_polarity")
    predictions, references = ["positive", "Negative ", "very positive", "great"], [1.0, -1.0, 1.0, 0.5]
    strict = metric.compute(predictions=predictions, references=references)
    mer = metric.compute(predictions=predictions, references=references, word_rule="mer_unibench")
    # strict: "very positive" -> 1, "great" unmatched; MER-UniBench: both not exactly a word -> 0 (negative side)
    assert strict["unmatched"] == 1 and mer["unmatched"] == 0
    assert strict["non0_acc2"] == pytest.approx(3 / 4) and mer["non0_acc2"] == pytest.approx(2 / 4)
    assert strict["mae"] is None  # word predictions: no regression scores


def test_regression_scores_equal_hand_values():
    predictions, references = [2.6, -0.4, 1.4, -3.5], [3.0, -1.0, 0.0, -2.2]
    scores = load("sentiment_polarity").compute(predictions=predictions, references=references)
    assert scores["mae"] == pytest.approx((0.4 + 0.6 + 1.4 + 1.3) / 4)
    # clipped to [-3, 3] and rounded: (3, -0, 1, -3) vs (3, -1, 0, -2) -> 1 of 4; to [-2, 2]: (2, -0, 1, -2) vs
    # (2, -1, 0, -2) -> 2 of 4
    assert scores["acc7"] == pytest.approx(0.25) and scores["acc5"] == pytest.approx(0.5)
    mp, mr = sum(predictions) / 4, sum(references) / 4
    cov = sum((p - mp) * (r - mr) for p, r in zip(predictions, references, strict=True))
    spread = math.sqrt(sum((p - mp) ** 2 for p in predictions) * sum((r - mr) ** 2 for r in references))
    assert scores["corr"] == pytest.approx(cov / spread) and scores["corr"] == pytest.approx(0.89854, abs=1e-4)
    # CH-SIMS classes (-1.01, -0.1], (-0.1, 0.1], (0.1, 1.01]: 0.11 -> 2 but 0.1 -> 1; -0.1 -> 0 like -0.3
    sims = load("sentiment_polarity").compute(predictions=[0.11, -0.3, 0.15, 0.9], references=[0.1, -0.1, 0.2, 0.6])
    assert sims["sims_acc3"] == pytest.approx(0.75)
