"""Emotion words: normalising free text to a label set, and emotion wheels for grouping open-vocabulary answers.

Written for this project. Used by the `metrics/` modules (scoring), the evaluation runner and the pipeline (mapping a
generated answer to a label). Three pieces:

- `lemma(word)`: a word's base form (case, punctuation, a table of adjective/participle -> noun forms, then a few
  suffix rules): `Worried` -> `worry`, `angry` -> `anger`, `happily` -> `happiness`.
- `CONCEPTS`: synonym sets, by lemma, of the basic emotion words the benchmarks' label sets use (MER, MELD, IEMOCAP).
  `map_to_label(text, label_set)` returns the label whose concept the text names, or None: never a guess. A text
  naming two different labels is ambiguous, hence None.
- `WHEELS`: three emotion wheels, groups of lemmas, written from published taxonomies:
  Plutchik's wheel (R. Plutchik, "The Nature of Emotions", American Scientist 89(4), 2001: 8 primary emotions with
  their milder and stronger forms), Parrott's tree (W. G. Parrott, "Emotions in Social Psychology", Psychology Press,
  2001: 6 primary emotions over secondary and tertiary ones), and the Geneva Emotion Wheel (K. R. Scherer, "What are
  emotions? And how can they be measured?", Social Science Information 44(4), 2005: 20 emotion families). Each group
  is the taxonomy's words plus everyday synonyms chosen here. `load_wheels(csv)` reads an external wheel file
  (columns `wheel,group,word`) instead, e.g. a benchmark's own; `write_wheels` writes that format.
"""

from __future__ import annotations

import csv
import os
import re

# adjective / participle / adverb -> the noun the wheels and concepts are written in
# fmt: off
_FORMS = {
    "happy": "happiness", "happily": "happiness", "joyful": "joy", "joyous": "joy", "glad": "gladness",
    "cheerful": "cheerfulness", "delighted": "delight", "pleased": "pleasure", "content": "contentment",
    "contented": "contentment", "satisfied": "satisfaction", "elated": "elation", "excited": "excitement",
    "amused": "amusement", "proud": "pride", "hopeful": "hope", "relieved": "relief", "grateful": "gratitude",
    "loving": "love", "sad": "sadness", "sadly": "sadness", "unhappy": "unhappiness", "sorrowful": "sorrow",
    "depressed": "depression", "gloomy": "gloom", "lonely": "loneliness", "disappointed": "disappointment",
    "hurt": "hurt", "ashamed": "shame", "guilty": "guilt", "embarrassed": "embarrassment", "regretful": "regret",
    "miserable": "misery", "heartbroken": "grief", "angry": "anger", "angrily": "anger", "mad": "anger",
    "furious": "fury", "enraged": "rage", "annoyed": "annoyance", "irritated": "irritation", "irritable": "irritation",
    "frustrated": "frustration", "hostile": "hostility", "resentful": "resentment", "bitter": "bitterness",
    "hateful": "hate", "jealous": "jealousy", "envious": "envy", "outraged": "outrage", "afraid": "fear",
    "fearful": "fear", "scared": "fear", "frightened": "fright", "terrified": "terror", "horrified": "horror",
    "panicked": "panic", "alarmed": "alarm", "anxious": "anxiety", "nervous": "nervousness", "worried": "worry",
    "worrying": "worry", "uneasy": "uneasiness", "tense": "tension", "concerned": "concern", "distressed": "distress",
    "surprised": "surprise", "surprising": "surprise", "astonished": "astonishment", "amazed": "amazement",
    "shocked": "shock", "startled": "shock", "disgusted": "disgust", "disgusting": "disgust", "revolted": "revulsion",
    "repulsed": "revulsion", "contemptuous": "contempt", "bored": "boredom", "calm": "calmness",
    "relaxed": "relaxation", "peaceful": "serenity", "serene": "serenity", "confused": "confusion",
    "curious": "curiosity", "interested": "interest", "admiring": "admiration", "trusting": "trust",
    "compassionate": "compassion", "sympathetic": "sympathy", "pensive": "pensiveness", "thoughtful": "pensiveness",
    "indifferent": "indifference", "vigilant": "vigilance", "ecstatic": "ecstasy", "enthusiastic": "enthusiasm",
    "optimistic": "optimism", "neutral": "neutral",
}
# fmt: on
_SUFFIXES = (("ness", ""), ("ied", "y"), ("ed", ""), ("ful", ""), ("ly", ""), ("ing", ""))


def lemma(word: str) -> str:
    """Base form of one emotion word: lower-cased, punctuation stripped, mapped to the noun the tables use."""
    word = re.sub(r"[^a-z\- ]", "", word.lower()).strip(" -")
    if word in _FORMS:
        return _FORMS[word]
    if word in _KNOWN:
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)] + replacement
            if stem in _KNOWN:
                return stem
            if stem in _FORMS:
                return _FORMS[stem]
    return word


# basic emotion concepts by lemma; a label maps to the concept holding its lemma
# fmt: off
CONCEPTS = {
    "happiness": {
        "amusement", "bliss", "cheerfulness", "contentment", "delight", "elation", "enjoyment", "excitement",
        "gladness", "glee", "happiness", "joy", "pleasure",
    },
    "sadness": {
        "depression", "despair", "gloom", "grief", "heartache", "melancholy", "misery", "sadness", "sorrow",
        "unhappiness",
    },
    "anger": {
        "anger", "annoyance", "frustration", "fury", "hostility", "irritation", "outrage", "rage", "wrath",
    },
    "neutral": {
        "calmness", "indifference", "neutral", "neutrality", "none",
    },
    "surprise": {
        "amazement", "astonishment", "shock", "surprise",
    },
    "fear": {
        "alarm", "dread", "fear", "fright", "horror", "panic", "terror",
    },
    "disgust": {
        "disgust", "loathing", "repugnance", "revulsion",
    },
    "worry": {
        "anxiety", "apprehension", "concern", "distress", "nervousness", "tension", "uneasiness", "worry",
    },
}
# fmt: on

# fmt: off
WHEELS = {
    "plutchik": {
        "joy": {
            "amusement", "calmness", "cheerfulness", "contentment", "delight", "ecstasy", "elation", "excitement",
            "gladness", "happiness", "joy", "pleasure", "relaxation", "serenity",
        },
        "trust": {
            "acceptance", "admiration", "gratitude", "love", "trust",
        },
        "fear": {
            "alarm", "anxiety", "apprehension", "concern", "distress", "dread", "fear", "fright", "horror",
            "nervousness", "panic", "tension", "terror", "uneasiness", "worry",
        },
        "surprise": {
            "amazement", "astonishment", "confusion", "distraction", "shock", "surprise",
        },
        "sadness": {
            "depression", "despair", "disappointment", "gloom", "grief", "hurt", "loneliness", "melancholy", "misery",
            "pensiveness", "sadness", "sorrow", "unhappiness",
        },
        "disgust": {
            "boredom", "contempt", "disgust", "loathing", "revulsion",
        },
        "anger": {
            "anger", "annoyance", "bitterness", "frustration", "fury", "hate", "hostility", "irritation", "outrage",
            "rage", "resentment",
        },
        "anticipation": {
            "anticipation", "curiosity", "enthusiasm", "hope", "interest", "optimism", "vigilance",
        },
    },
    "parrott": {
        "love": {
            "admiration", "adoration", "affection", "attraction", "caring", "compassion", "desire", "fondness",
            "liking", "longing", "love", "passion", "sentimentality", "tenderness", "trust",
        },
        "joy": {
            "amusement", "bliss", "calmness", "cheerfulness", "contentment", "delight", "ecstasy", "elation",
            "enjoyment", "enthusiasm", "euphoria", "excitement", "gladness", "glee", "gratitude", "happiness", "hope",
            "joy", "optimism", "pleasure", "pride", "relaxation", "relief", "satisfaction", "serenity", "thrill",
            "triumph", "zeal",
        },
        "surprise": {
            "amazement", "astonishment", "shock", "surprise",
        },
        "anger": {
            "aggravation", "agitation", "anger", "annoyance", "bitterness", "contempt", "disgust", "dislike", "envy",
            "exasperation", "frustration", "fury", "grumpiness", "hate", "hostility", "irritation", "jealousy",
            "loathing", "outrage", "rage", "resentment", "revulsion", "scorn", "spite", "wrath",
        },
        "sadness": {
            "anguish", "boredom", "depression", "despair", "disappointment", "dismay", "embarrassment", "gloom",
            "grief", "guilt", "hopelessness", "humiliation", "hurt", "insecurity", "loneliness", "melancholy",
            "misery", "pensiveness", "pity", "regret", "rejection", "remorse", "sadness", "shame", "sorrow",
            "suffering", "sympathy", "unhappiness", "woe",
        },
        "fear": {
            "alarm", "anxiety", "apprehension", "concern", "distress", "dread", "fear", "fright", "horror", "hysteria",
            "nervousness", "panic", "shock", "tension", "terror", "uneasiness", "worry",
        },
    },
    "geneva": {
        "interest": {
            "anticipation", "curiosity", "enthusiasm", "excitement", "interest", "vigilance",
        },
        "amusement": {
            "amusement", "glee",
        },
        "pride": {
            "pride", "triumph",
        },
        "joy": {
            "bliss", "cheerfulness", "delight", "ecstasy", "elation", "gladness", "happiness", "joy",
        },
        "pleasure": {
            "enjoyment", "pleasure", "satisfaction",
        },
        "contentment": {
            "calmness", "contentment", "relaxation", "serenity",
        },
        "love": {
            "adoration", "affection", "fondness", "love", "tenderness",
        },
        "admiration": {
            "admiration", "respect", "trust",
        },
        "relief": {
            "relief",
        },
        "compassion": {
            "compassion", "pity", "sympathy",
        },
        "sadness": {
            "depression", "despair", "gloom", "grief", "hurt", "loneliness", "melancholy", "misery", "pensiveness",
            "sadness", "sorrow", "unhappiness",
        },
        "guilt": {
            "guilt", "remorse",
        },
        "regret": {
            "regret",
        },
        "shame": {
            "embarrassment", "humiliation", "shame",
        },
        "disappointment": {
            "disappointment", "dismay", "frustration",
        },
        "fear": {
            "alarm", "anxiety", "apprehension", "concern", "distress", "dread", "fear", "fright", "horror",
            "nervousness", "panic", "tension", "terror", "uneasiness", "worry",
        },
        "disgust": {
            "disgust", "loathing", "revulsion",
        },
        "contempt": {
            "boredom", "contempt", "scorn",
        },
        "hate": {
            "bitterness", "envy", "hate", "hostility", "jealousy", "resentment",
        },
        "anger": {
            "anger", "annoyance", "fury", "irritation", "outrage", "rage", "wrath",
        },
    },
}
# fmt: on

_KNOWN = (
    set(_FORMS.values())
    | {w for words in CONCEPTS.values() for w in words}
    | {w for wheel in WHEELS.values() for words in wheel.values() for w in words}
)


def tokens(text: str) -> list[str]:
    """Words of a free-text answer (letters and hyphens), in order."""
    return re.findall(r"[a-z][a-z\-]*", text.lower())


def concept_of(word: str) -> str | None:
    """The basic-emotion concept a word names (`Joyful` -> `happiness`), or None."""
    base = lemma(word)
    return next((name for name, words in CONCEPTS.items() if base in words), None)


NEGATIONS = {"not", "no", "never", "nor", "isn't", "wasn't", "doesn't", "don't", "without"}


def map_to_label(text: str, label_set: list[str]) -> str | None:
    """The label of `label_set` that a free-text answer names, or None: nothing named, two labels named, or a
    negation in the answer (`not happy` is not mapped to anything).

    Matching is by concept: `Joyful.` maps to `joy` in MELD's set and to `happy` in MER's; `the person looks scared`
    maps to `fear` where the set has it and to nothing where it has only `worried`.
    """
    labels = {label.lower(): label for label in label_set}
    words = tokens(text.replace("n't", " not"))
    if " ".join(words) in labels:
        return labels[" ".join(words)]
    if NEGATIONS & set(words):
        return None
    by_concept = {concept_of(label) or lemma(label): label for label in label_set}
    named = set()
    for word in words:
        if word in labels:
            named.add(labels[word])
        elif concept_of(word) in by_concept:
            named.add(by_concept[concept_of(word)])
    return named.pop() if len(named) == 1 else None


def wheel_groups(words: list[str] | str, wheel: dict[str, set[str]]) -> set[str]:
    """Groups of one wheel that a list of emotion words (or a comma-separated answer) falls into."""
    if isinstance(words, str):
        words = [w for w in re.split(r"[,;/\n]|\band\b", words) if w.strip()]
    groups = set()
    for phrase in words:
        for candidate in [phrase, *tokens(phrase)]:  # a multi-word phrase, else each of its words
            base = lemma(candidate)
            found = {group for group, members in wheel.items() if base in members}
            if found:
                groups |= found
                break
    return groups


def read_wheel_rows(path: str | os.PathLike):
    """Yield `(wheel, group, word)` of a CSV with columns `wheel,group,word`, stripped; errors name file and line."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"wheel", "group", "word"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{os.fspath(path)}: missing column(s) {sorted(missing)}; expected wheel,group,word")
        for number, row in enumerate(reader, start=2):
            if not all((row[k] or "").strip() for k in ("wheel", "group", "word")):
                raise ValueError(f"{os.fspath(path)}:{number}: empty wheel, group or word")
            yield row["wheel"].strip(), row["group"].strip(), row["word"].strip()


def load_wheels(path: str | os.PathLike) -> dict[str, dict[str, set[str]]]:
    """Wheels from a CSV file with columns `wheel,group,word` (one row per word; words are lemmatised)."""
    wheels: dict[str, dict[str, set[str]]] = {}
    for wheel, group, word in read_wheel_rows(path):
        wheels.setdefault(wheel, {}).setdefault(group, set()).add(lemma(word))
    return wheels


def write_wheels(wheels: dict[str, dict[str, set[str]]], path: str | os.PathLike) -> None:
    """Write wheels in the `wheel,group,word` format `load_wheels` reads (sorted, so the file is stable)."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["wheel", "group", "word"])
        for wheel in sorted(wheels):
            for group in sorted(wheels[wheel]):
                for word in sorted(wheels[wheel][group]):
                    writer.writerow([wheel, group, word])


__all__ = [
    "CONCEPTS",
    "NEGATIONS",
    "WHEELS",
    "concept_of",
    "lemma",
    "load_wheels",
    "read_wheel_rows",
    "map_to_label",
    "wheel_groups",
    "write_wheels",
]
