"""Ceilings printed next to every demo result: what an ideal observer and a linear probe can get from a cut clip.

- **Ideal observer** (`ideal_observer`): knows the generator (`modeling_affectverse/data/demo_data.py`) and sees the
  cut clip without noise. The first frame shows the start expression S exactly; any observed state with a blend
  weight w > 0 lies on the line from S towards the label L, and the direction identifies L. So per clip it is right
  with probability 1 when the cut shows some w > 0 in a modality it is given, and 1/5 otherwise (L is uniform over the
  five expressions other than S). What the cut shows is computed with the package's own split (`ClipSplit.of`) on the
  decoded clip's shape: video frames at the decoding rate in whole temporal patches, audio samples before t*.
- **Dominant-expression reader** (`dominant_reader`): names the expression that dominates the last observed state
  (L when w > 0.5, else S). The v2 data make it score below chance at rho <= 0.5: reading the end of the prefix is
  not enough there, the trend has to be followed.
- **Linear-probe ceiling** (`probe_accuracy`): logistic regression on pooled observed tokens, fit on the training
  clips, scored on held-out clips (metrics/imagination_report.py builds the features).

    from metrics.ceilings import ideal_observer, read_parameters
    ideal_observer(read_parameters("data/demo/parameters.jsonl", split="test"), rho=0.5, modalities="AV")
"""

from __future__ import annotations

import json
import math

import numpy as np

from modeling_affectverse.data.demo_data import FRAME_RATE, blend_weight
from modeling_affectverse.media_affectverse import ClipSplit

DECODE_FPS = 3.0  # the tiny model's (and the recipes') decoding rate
SAMPLE_RATE = 16_000  # what the processor's feature extractor decodes audio at
OTHER_EXPRESSIONS = 5  # L is uniform over the expressions other than S


def read_parameters(path: str, split: str | None = None) -> list[dict]:
    """The generator's draws per clip (`parameters.jsonl`), optionally of one split."""
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [row for row in rows if split is None or row["split"] == split]


def _weights(draws: dict) -> np.ndarray:
    """Blend weight of each generated frame (at `FRAME_RATE`), as `render_clip` draws them."""
    count = int(round(draws["seconds"] * FRAME_RATE))
    return blend_weight(np.arange(count) / max(1, count - 1), draws["onset"], draws["completion"])


def observed_weights(draws: dict, rho: float, fps: float = DECODE_FPS, sample_rate: int = SAMPLE_RATE) -> dict:
    """The blend weights the clip cut at `rho` shows: `{"video": (F,), "audio": last observed w}` (video: one per
    observed decoded frame, the frame on screen at k / fps; audio: the weight at the last observed sample, the
    voice's parameters being interpolated between the generated frames)."""
    seconds = draws["seconds"]
    weights = _weights(draws)
    decoded = math.ceil(seconds * fps - 1e-6)  # decode_video: ceil(d * fps) frames, frame k at k / fps
    frames = np.zeros((decoded, 1, 1, 3), dtype=np.uint8)
    wave = np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)
    split = ClipSplit.of(rho, frames, fps, wave, sample_rate)
    times = np.arange(split.past_frames) / fps
    on_screen = np.minimum(np.floor(times * FRAME_RATE + 1e-6).astype(int), len(weights) - 1)
    last_sample = (split.past_samples - 1) / sample_rate
    keys = np.linspace(0.0, seconds, len(weights))
    return {"video": weights[on_screen], "audio": float(np.interp(last_sample, keys, weights))}


def _shown(draws: dict, rho: float, modalities: str) -> tuple[float, float]:
    """(largest weight any given modality shows, weight of the latest observed state) for one clip."""
    seen = observed_weights(draws, rho)
    largest, last = 0.0, 0.0
    if "V" in modalities:
        largest, last = max(largest, float(seen["video"].max())), float(seen["video"][-1])
    if "A" in modalities:
        largest, last = max(largest, seen["audio"]), seen["audio"]  # audio ends at t*, the later of the two
    return largest, last


def ideal_observer(parameters: list[dict], rho: float, modalities: str = "AV") -> float:
    """Expected accuracy of the ideal observer over `parameters`' clips cut at `rho`, seeing `modalities` (any of
    "A", "V"; "T" adds nothing: the subtitle is independent of the label). 1/5 per clip that shows no change yet."""
    if not any(m in modalities for m in "AV"):
        return 1.0 / (OTHER_EXPRESSIONS + 1)  # text only: nothing about the label, not even S
    scores = [1.0 if _shown(d, rho, modalities)[0] > 0 else 1.0 / OTHER_EXPRESSIONS for d in parameters]
    return float(np.mean(scores))


def dominant_reader(parameters: list[dict], rho: float, modalities: str = "AV") -> float:
    """Accuracy of naming the expression that dominates the latest observed state (L if w > 0.5, else S)."""
    if not any(m in modalities for m in "AV"):
        return 1.0 / (OTHER_EXPRESSIONS + 1)
    return float(np.mean([_shown(d, rho, modalities)[1] > 0.5 for d in parameters]))


def probe_accuracy(train_x: np.ndarray, train_y, test_x: np.ndarray, test_y) -> float:
    """Logistic regression (standardised features) fit on the training rows, accuracy on the held-out rows. A
    constant feature carries nothing: the probe then predicts one class (the most frequent in training)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    probe.fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))
    return float(probe.score(np.asarray(test_x, dtype=np.float64), np.asarray(test_y)))


def ceilings(parameters: list[dict], ratios, settings=("AVT", "AT", "VT")) -> dict:
    """`{setting: {rho: {"ideal_observer", "dominant_reader"}}}` over `parameters`' clips."""
    return {
        setting: {
            f"{float(rho):g}": {
                "ideal_observer": ideal_observer(parameters, rho, setting),
                "dominant_reader": dominant_reader(parameters, rho, setting),
            }
            for rho in ratios
        }
        for setting in settings
    }


__all__ = ["ceilings", "dominant_reader", "ideal_observer", "observed_weights", "probe_accuracy", "read_parameters"]
