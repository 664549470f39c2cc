"""The embedded demo dataset: real `.mp4` clips of a synthetic face and voice whose emotion evolves over the clip.

Each clip (H.264 video + AAC audio, written through `av`) starts in one expression and moves to another; the label
is the expression it ends in, in the MER six-class space. The face's mouth curve and opening, brow tilt and height,
eye openness and skin tint move together with a voiced tone whose pitch register, contour, vibrato, energy and
timbre follow the same emotion. The change starts between 20% and 40% of the clip and is complete by 75% at the
latest, so the first 20% shows only the start expression (which is never the label) and the label is only certain
from the last quarter. The subtitle is drawn from a pool of neutral sentences, independent of the label: what the
clip ends as has to be read from how it evolves, which is what the Emotion World Module is for.

    python -m modeling_affectverse.data.demo_data --output data/demo  # 480 clips of 1-3 s, seed 0 (about 35 s)

writes `data/demo/clips/demo_XXXX.mp4`, `data/demo/emotion.jsonl` (label: the final expression; `reasoning`: the
change of face and voice in words, the target of the reasoning answer format) and
`data/demo/sentiment.jsonl` (the same clips, label: the final expression's valence in [-3, 3], MOSI-style).
Every 6th clip is in the `test` split, the rest `train`. Same seed, same arguments: byte-identical manifests and
identical decoded frames.
"""

from __future__ import annotations

import argparse
import os
import sys

import av
import numpy as np
from tqdm.auto import tqdm

from modeling_affectverse.data.converters import MER_LABELS
from modeling_affectverse.data.manifest import write_manifest

# face: mouth curve (+ smile / - frown), mouth opening, brow tilt (+ inner ends down / - inner ends up),
# brow height, eye openness, skin tint (RGB gain: a flush, pallor, ...); voice: pitch (Hz), pitch slope over the
# clip (Hz), vibrato depth (Hz), energy, spectral rolloff (harmonic h has amplitude h**-rolloff: low = bright/harsh).
# The cues are deliberately coarse (tint, pitch register, timbre) so that the tiny random encoders of the embedded
# model can see them at 56x56 pixels and 20 mel bins; each emotion differs from every other in several cues.
EXPRESSIONS = {
    "neutral": dict(curve=0.0, mouth=0.05, tilt=0.0, brow=0.0, eyes=0.6, tint=(1.0, 1.0, 1.0),
                    pitch=150, slope=0, vibrato=0, energy=0.3, rolloff=1.5),
    "happy": dict(curve=1.0, mouth=0.4, tilt=0.0, brow=0.15, eyes=0.5, tint=(1.0, 0.9, 0.35),
                  pitch=420, slope=80, vibrato=0, energy=0.6, rolloff=1.0),
    "sad": dict(curve=-0.9, mouth=0.0, tilt=-0.8, brow=0.1, eyes=0.3, tint=(0.5, 0.65, 1.0),
                pitch=100, slope=-30, vibrato=0, energy=0.2, rolloff=2.5),
    "angry": dict(curve=-0.5, mouth=0.2, tilt=1.0, brow=-0.3, eyes=0.4, tint=(1.0, 0.3, 0.25),
                  pitch=220, slope=0, vibrato=0, energy=0.9, rolloff=0.5),
    "surprise": dict(curve=0.0, mouth=1.0, tilt=0.0, brow=0.9, eyes=1.0, tint=(0.85, 0.55, 1.0),
                     pitch=650, slope=150, vibrato=0, energy=0.7, rolloff=1.5),
    "worried": dict(curve=-0.3, mouth=0.1, tilt=-1.0, brow=0.4, eyes=0.8, tint=(0.55, 0.95, 0.6),
                    pitch=300, slope=10, vibrato=25, energy=0.35, rolloff=1.2),
}  # fmt: skip
# valence of each final expression for the sentiment variant (MOSI scale, -3 .. 3)
VALENCE = {"happy": 2.4, "surprise": 0.8, "neutral": 0.0, "worried": -1.2, "sad": -2.1, "angry": -2.6}
SUBTITLES = [
    "I went to the station this morning.",
    "We talked about it on the way home.",
    "The meeting is moved to Thursday.",
    "She said the results came in today.",
    "They opened the box in the kitchen.",
    "He called me right after lunch.",
    "Let me tell you what happened next.",
    "The train was there when we arrived.",
]
# what each expression looks and sounds like, in words: the clips' generated `reasoning` (the curriculum's stage 2)
CUES = {
    "neutral": ("a relaxed face", "a level voice"),
    "happy": ("a smile and a warm yellow face", "a high, rising voice"),
    "sad": ("a frown and a bluish face", "a low, falling voice"),
    "angry": ("lowered brows and a red face", "a loud, harsh voice"),
    "surprise": ("raised brows and an open mouth", "a very high voice"),
    "worried": ("raised inner brows and a greenish face", "a trembling voice"),
}
NUM_CLIPS = 480  # 400 train, 80 test: the tiny model needs a few hundred clips to generalise, not to memorise
FRAME_SIZE = 112
FRAME_RATE = 12
SAMPLE_RATE = 24_000  # not 16 kHz on purpose: decoding resamples, as with real media


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _blend(start: dict, end: dict, weight: float) -> dict:
    """Linear blend of two expressions (the tint channel by channel)."""
    return {
        key: tuple((1 - weight) * a + weight * b for a, b in zip(start[key], end[key], strict=True))
        if isinstance(start[key], tuple)
        else (1 - weight) * start[key] + weight * end[key]
        for key in start
    }


def draw_face(state: dict, look: dict, size: int = FRAME_SIZE) -> np.ndarray:
    """One RGB frame `(size, size, 3)` uint8 of the face in expression `state` (`look`: colours and position)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (S, S) each, in [0, 1)
    cx, cy = look["cx"], look["cy"]
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = look["background"]
    face = ((x - cx) / 0.32) ** 2 + ((y - cy) / 0.40) ** 2 <= 1
    image[face] = look["skin"] * np.asarray(state["tint"], dtype=np.float32)
    dark = np.array([0.15, 0.1, 0.1], dtype=np.float32)
    for side in (-1, 1):
        ex, ey = cx + side * 0.13, cy - 0.08
        eye = ((x - ex) / 0.055) ** 2 + ((y - ey) / max(0.005, 0.045 * state["eyes"])) ** 2 <= 1
        image[eye] = 1.0
        image[eye & ((x - ex) ** 2 + (y - ey) ** 2 <= 0.022**2)] = dark
        # brow: a thick segment above the eye; positive tilt lowers its inner end (towards the nose)
        inner, outer = ex - side * 0.06, ex + side * 0.06
        by = ey - 0.1 - 0.05 * state["brow"]
        t = np.clip((x - inner) / (outer - inner), 0, 1)
        line_y = by + 0.04 * state["tilt"] * (1 - t) - 0.01
        brow = (np.abs(y - line_y) < 0.014) & (np.abs(x - ex) < 0.065)
        image[brow] = dark
    mx, my = cx, cy + 0.2
    u = (x - mx) / 0.13
    inside = np.abs(u) <= 1
    lip = my + 0.06 * state["curve"] * (1 - u**2)  # smile: centre lower than the corners (y grows downwards)
    mouth_line = inside & (np.abs(y - lip) < 0.013)
    opening = inside & (y > lip) & (y < lip + 0.08 * state["mouth"] * (1 - u**2))
    image[mouth_line | opening] = np.array([0.55, 0.1, 0.12], dtype=np.float32)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def voice(states: list[dict], seconds: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced tone `(N,)` float32 following the per-sample blended states (pitch, vibrato, energy, syllables)."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    keys = np.linspace(0, seconds, len(states))
    param = {k: np.interp(t, keys, [s[k] for s in states]) for k in ("pitch", "slope", "vibrato", "energy", "rolloff")}
    pitch = param["pitch"] + param["slope"] * (t / seconds - 0.5) + param["vibrato"] * np.sin(2 * np.pi * 6 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    tone = sum(np.sin(h * phase) * h ** -param["rolloff"] for h in range(1, 9))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 5) * t) ** 2
    wave = 0.25 * param["energy"] * syllables * tone + 0.003 * rng.standard_normal(n)
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)
    return (wave * fade).astype(np.float32)


def write_clip(path: str, frames: list[np.ndarray], wave: np.ndarray) -> None:
    """Mux frames (H.264, yuv420p, `FRAME_RATE`) and a mono wave (AAC, `SAMPLE_RATE`) into one mp4."""
    with av.open(path, "w") as container:
        # x264's SIMD paths make crf encodes differ from run to run (seen with PyAV 18 / x264 here): plain C
        # code and one thread give the same bytes every time, at a cost that does not matter for 1-3 s clips
        options = {"crf": "26", "preset": "veryfast", "threads": "1", "x264-params": "asm=0"}
        video = container.add_stream("libx264", rate=FRAME_RATE, options=options)
        video.width = video.height = frames[0].shape[0]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        chunk = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
        container.mux(audio.encode(chunk))
        container.mux(audio.encode())


def describe_clip(start: str, label: str) -> str:
    """The clip's reasoning text: how face and voice change from the start expression to the final one."""
    (face_start, voice_start), (face_end, voice_end) = CUES[start], CUES[label]
    return (
        f"The clip starts with {face_start} and {voice_start}. "
        f"It ends with {face_end} and {voice_end}, which reads as {label}."
    )


def start_expression(states: list[dict]) -> str:
    """The expression a clip starts in (its first frame's state is that expression exactly)."""
    return next(name for name, values in EXPRESSIONS.items() if values == states[0])


def make_clip(label: str, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, list[dict]]:
    """Frames, wave and per-frame expression states of a clip that starts in another expression, ends in `label`."""
    start = str(rng.choice([name for name in EXPRESSIONS if name != label]))
    seconds = round(float(rng.uniform(1.0, 3.0)) * FRAME_RATE) / FRAME_RATE
    # the change starts between 20% and 40% of the clip and is complete 25-35% of the clip later (by 75%): the first
    # 20% shows only the start expression, half of the clip at most part of the change, the last quarter the label
    onset = float(rng.uniform(0.2, 0.4))
    offset = onset + float(rng.uniform(0.25, 0.35))
    look = {
        "background": rng.uniform(0.2, 0.9, 3).astype(np.float32),
        "skin": rng.uniform([0.85, 0.7, 0.6], [1.0, 0.85, 0.75]).astype(np.float32),
        "cx": 0.5 + float(rng.uniform(-0.04, 0.04)),
        "cy": 0.5 + float(rng.uniform(-0.03, 0.03)),
    }
    num_frames = int(round(seconds * FRAME_RATE))
    progress = _smoothstep((np.arange(num_frames) / max(1, num_frames - 1) - onset) / (offset - onset))
    states = [_blend(EXPRESSIONS[start], EXPRESSIONS[label], float(w)) for w in progress]
    bob = 0.01 * np.sin(np.linspace(0, 2 * np.pi * rng.uniform(0.3, 1.0), num_frames))
    frames = [draw_face(state, {**look, "cy": look["cy"] + float(b)}) for state, b in zip(states, bob, strict=True)]
    return frames, voice(states, seconds, rng), states


def generate_demo_dataset(
    output: str, num_clips: int = NUM_CLIPS, seed: int = 0, progress: bool = True
) -> dict[str, str]:
    """Write `num_clips` clips and the two manifests under `output`. Returns the manifests' paths by task."""
    rng = np.random.default_rng(seed)
    clips_dir = os.path.join(output, "clips")
    os.makedirs(clips_dir, exist_ok=True)
    labels = [MER_LABELS[i % len(MER_LABELS)] for i in rng.permutation(num_clips)]
    emotion_rows, sentiment_rows = [], []
    for index in tqdm(range(num_clips), desc="demo clips", disable=not progress):
        label = labels[index]
        frames, wave, states = make_clip(label, rng)
        name = f"demo_{index:04d}"
        path = os.path.join(clips_dir, f"{name}.mp4")
        write_clip(path, frames, wave)
        relative = os.path.join("clips", f"{name}.mp4")
        common = {
            "id": name,
            "split": "test" if index % 6 == 5 else "train",
            "video": relative,
            "audio": relative,
            "subtitle": SUBTITLES[int(rng.integers(len(SUBTITLES)))],
        }
        emotion_rows.append(
            {
                **common,
                "dataset": "demo",
                "task": "emotion",
                "label": label,
                "label_set": MER_LABELS,
                "reasoning": describe_clip(start_expression(states), label),
            }
        )
        valence = round(VALENCE[label] + float(rng.uniform(-0.4, 0.4)), 1)
        sentiment_rows.append(
            {**common, "dataset": "demo-sentiment", "task": "sentiment", "label": float(np.clip(valence, -3, 3))}
        )
    manifests = {"emotion": os.path.join(output, "emotion.jsonl"), "sentiment": os.path.join(output, "sentiment.jsonl")}
    write_manifest(emotion_rows, manifests["emotion"])
    write_manifest(sentiment_rows, manifests["sentiment"])
    return manifests


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="data/demo", help="folder for clips/ and the manifests")
    parser.add_argument("--num-clips", type=int, default=NUM_CLIPS)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_clips < 1:
        parser.error("--num-clips must be at least 1")
    manifests = generate_demo_dataset(args.output, args.num_clips, args.seed)
    print(
        f"wrote {args.num_clips} clips to {os.path.join(args.output, 'clips')}; manifests: "
        + ", ".join(manifests.values())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
