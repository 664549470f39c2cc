"""The embedded demo dataset (v2): real `.mp4` clips of a synthetic face and voice whose emotion changes slowly.

Each clip (H.264 video + AAC audio, written through `av`) starts in one expression S and moves to another, its label
L (MER six classes); S is never L and is drawn independently of it. The change is slow and early: it starts at 5-15%
of the clip and completes at 75-85%, easing in (w = progress^2), so a clip cut at rho = 0.3-0.5 is still dominated by
S while the direction of change is already visible: naming the dominant expression scores below chance, following
the trend scores near the ceiling (`ideal_observer`). Face (mouth, brows, eyes, skin tint) and voice (pitch register,
contour, vibrato, energy, timbre) follow the same blend. The subtitle is neutral and independent of the label.

    python -m modeling_affectverse.data.demo_data --output data/demo  # 1,200 labelled + 1,200 unlabelled clips

writes `clips/demo_XXXX.mp4` and `clips/pool_XXXX.mp4`, `emotion.jsonl` (label: the final expression; `reasoning`:
the change in words), `sentiment.jsonl` (the same clips, label: the final expression's valence in [-3, 3]),
`unlabeled.jsonl` (the pool: rows marked `unlabeled`, no label; for the world model's imagination only) and
`parameters.jsonl` (every clip's draws: label, start, duration, onset, completion; the ideal observer reads them).
Splits by index: of every 12 clips 8 are `train`, 1 `validation`, 3 `test` (800 / 100 / 300 of 1,200). Each clip's
draws come from its own generator (`clip_rng`), so clips can be made in parallel (`--workers`) and the same seed
gives byte-identical manifests and identical decoded frames whatever the number of workers.
"""

from __future__ import annotations

import argparse
import json
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
NUM_CLIPS = 1200  # labelled: 800 train / 100 validation / 300 test (`split_of`)
QUICKSTART_CLIPS = 600  # the quickstart's subset (400 / 50 / 150): its time budget
NUM_UNLABELED = 1200  # the unlabelled pool from the same process (the world model's imagination loss only)
FRAME_SIZE = 112
FRAME_RATE = 12
SAMPLE_RATE = 24_000  # not 16 kHz on purpose: decoding resamples, as with real media
ONSET = (0.05, 0.15)  # the change starts here (fraction of the clip) ...
COMPLETION = (0.75, 0.85)  # ... and is complete here (w < 0.5 up to rho = 0.5 in every clip)
EASE = 2.0  # blend weight w = ((t - onset) / (completion - onset)) ** EASE, clipped to [0, 1]: slow at first
POOLS = {"demo": 0, "pool": 1}  # id prefix -> the pool's entry in each clip's seed


def split_of(index: int) -> str:
    """The split of labelled clip `index`: of every 12, 8 train, 1 validation, 3 test."""
    position = index % 12
    return "train" if position < 8 else "validation" if position == 8 else "test"


def clip_rng(seed: int, pool: str, index: int) -> np.random.Generator:
    """Clip `index` of `pool`'s own generator: its draws do not depend on any other clip."""
    return np.random.default_rng([seed, POOLS[pool], index])


def pool_labels(seed: int, pool: str, count: int) -> list[str]:
    """Balanced labels: the six classes repeated, in a seeded order."""
    order = np.random.default_rng([seed, POOLS[pool], 2**31]).permutation(count)
    return [MER_LABELS[i % len(MER_LABELS)] for i in order]


def blend_weight(t: np.ndarray, onset: float, completion: float) -> np.ndarray:
    """Blend weight of the label at clip fractions `t`: 0 before the onset, 1 from the completion, eased in."""
    return np.clip((np.asarray(t, dtype=np.float64) - onset) / (completion - onset), 0.0, 1.0) ** EASE


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


def voice(
    states: list[dict], seconds: float, syllable_rate: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """A voiced tone `(N,)` float32 following the per-sample blended states (pitch, vibrato, energy, syllables)."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    keys = np.linspace(0, seconds, len(states))
    param = {k: np.interp(t, keys, [s[k] for s in states]) for k in ("pitch", "slope", "vibrato", "energy", "rolloff")}
    pitch = param["pitch"] + param["slope"] * (t / seconds - 0.5) + param["vibrato"] * np.sin(2 * np.pi * 6 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    tone = sum(np.sin(h * phase) * h ** -param["rolloff"] for h in range(1, 9))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * syllable_rate * t) ** 2
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


def draw_clip(label: str, rng: np.random.Generator) -> dict:
    """Everything random about one clip, drawn in a fixed order: start expression, duration, onset, completion, look,
    head bob, syllable rate, subtitle, valence jitter, and the seed of the voice's noise."""
    start = str(rng.choice([name for name in EXPRESSIONS if name != label]))  # never the label, uniform otherwise
    # whole thirds of a second: decoded at 3 fps, the frames then last exactly as long as the audio, so a cut at rho
    # is at rho x the clip for both (a padded last frame would otherwise lengthen what rho is a fraction of)
    seconds = round(float(rng.uniform(1.0, 3.0)) * 3) / 3
    onset = float(rng.uniform(*ONSET))
    completion = float(rng.uniform(*COMPLETION))
    look = {
        "background": [float(x) for x in rng.uniform(0.2, 0.9, 3)],
        "skin": [float(x) for x in rng.uniform([0.85, 0.7, 0.6], [1.0, 0.85, 0.75])],
        "cx": 0.5 + float(rng.uniform(-0.04, 0.04)),
        "cy": 0.5 + float(rng.uniform(-0.03, 0.03)),
    }
    return {
        "label": label,
        "start": start,
        "seconds": seconds,
        "onset": onset,
        "completion": completion,
        "look": look,
        "bob": float(rng.uniform(0.3, 1.0)),
        "syllable_rate": float(rng.uniform(3, 5)),
        "subtitle": int(rng.integers(len(SUBTITLES))),
        "valence_jitter": float(rng.uniform(-0.4, 0.4)),
        "noise_seed": int(rng.integers(2**31)),
    }


def render_clip(draws: dict) -> tuple[list[np.ndarray], np.ndarray, list[dict]]:
    """Frames, wave and per-frame expression states of the clip `draws` describes (deterministic)."""
    num_frames = int(round(draws["seconds"] * FRAME_RATE))
    weights = blend_weight(np.arange(num_frames) / max(1, num_frames - 1), draws["onset"], draws["completion"])
    states = [_blend(EXPRESSIONS[draws["start"]], EXPRESSIONS[draws["label"]], float(w)) for w in weights]
    look = {key: np.asarray(value, dtype=np.float32) for key, value in draws["look"].items()}
    bob = 0.01 * np.sin(np.linspace(0, 2 * np.pi * draws["bob"], num_frames))
    frames = [
        draw_face(state, {**look, "cy": float(look["cy"]) + float(b)}) for state, b in zip(states, bob, strict=True)
    ]
    wave = voice(states, draws["seconds"], draws["syllable_rate"], np.random.default_rng(draws["noise_seed"]))
    return frames, wave, states


def make_clip(label: str, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, list[dict]]:
    """Frames, wave and per-frame expression states of a clip that starts in another expression, ends in `label`."""
    return render_clip(draw_clip(label, rng))


def _write_one(job: tuple) -> dict:
    """Draw, render and write one clip (a worker's task); returns its draws."""
    seed, pool, index, label, clips_dir = job
    draws = draw_clip(label, clip_rng(seed, pool, index))
    frames, wave, _ = render_clip(draws)
    write_clip(os.path.join(clips_dir, f"{pool}_{index:04d}.mp4"), frames, wave)
    return draws


def _clip_row(pool: str, index: int, draws: dict) -> dict:
    """The manifest fields every task shares."""
    relative = os.path.join("clips", f"{pool}_{index:04d}.mp4")
    return {
        "id": f"{pool}_{index:04d}",
        "split": split_of(index) if pool == "demo" else "unlabeled",
        "video": relative,
        "audio": relative,
        "subtitle": SUBTITLES[draws["subtitle"]],
    }


def generate_demo_dataset(
    output: str,
    num_clips: int = NUM_CLIPS,
    seed: int = 0,
    progress: bool = True,
    num_unlabeled: int = 0,
    workers: int = 1,
) -> dict[str, str]:
    """Write `num_clips` labelled clips (and `num_unlabeled` pool clips) and the manifests under `output`.

    Returns the manifests' paths by name (`emotion`, `sentiment`, `parameters`, and `unlabeled` with a pool)."""
    clips_dir = os.path.join(output, "clips")
    os.makedirs(clips_dir, exist_ok=True)
    jobs = [(seed, "demo", i, label, clips_dir) for i, label in enumerate(pool_labels(seed, "demo", num_clips))]
    jobs += [(seed, "pool", i, label, clips_dir) for i, label in enumerate(pool_labels(seed, "pool", num_unlabeled))]
    bar = tqdm(total=len(jobs), desc="demo clips", disable=not progress)
    if workers > 1:
        import multiprocessing

        # fork where there is one (no interpreter start-up per worker; the workers run numpy and av only)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as workers_pool:
            drawn = []
            for draws in workers_pool.imap(_write_one, jobs, chunksize=8):
                drawn.append(draws)
                bar.update(1)
    else:
        drawn = []
        for job in jobs:
            drawn.append(_write_one(job))
            bar.update(1)
    bar.close()
    emotion_rows, sentiment_rows, unlabeled_rows, parameters = [], [], [], []
    for (_, pool, index, label, _), draws in zip(jobs, drawn, strict=True):
        common = _clip_row(pool, index, draws)
        parameters.append({"id": common["id"], "split": common["split"], **{k: draws[k] for k in PARAMETER_KEYS}})
        if pool == "pool":
            unlabeled_rows.append(
                {**common, "dataset": "demo", "task": "emotion", "label": None, "label_set": MER_LABELS,
                 "unlabeled": True}
            )  # fmt: skip
            continue
        emotion_rows.append(
            {
                **common,
                "dataset": "demo",
                "task": "emotion",
                "label": label,
                "label_set": MER_LABELS,
                "reasoning": describe_clip(draws["start"], label),
            }
        )
        valence = round(VALENCE[label] + draws["valence_jitter"], 1)
        sentiment_rows.append(
            {**common, "dataset": "demo-sentiment", "task": "sentiment", "label": float(np.clip(valence, -3, 3))}
        )
    manifests = {name: os.path.join(output, f"{name}.jsonl") for name in ("emotion", "sentiment", "parameters")}
    write_manifest(emotion_rows, manifests["emotion"])
    write_manifest(sentiment_rows, manifests["sentiment"])
    with open(manifests["parameters"], "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, sort_keys=True) + "\n" for row in parameters)
    if unlabeled_rows:
        manifests["unlabeled"] = os.path.join(output, "unlabeled.jsonl")
        write_manifest(unlabeled_rows, manifests["unlabeled"])
    return manifests


PARAMETER_KEYS = ("label", "start", "seconds", "onset", "completion")


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="data/demo", help="folder for clips/ and the manifests")
    parser.add_argument("--num-clips", type=int, default=NUM_CLIPS, help="labelled clips (8/12 train, 1/12 val.)")
    parser.add_argument("--num-unlabeled", type=int, default=NUM_UNLABELED, help="clips of the unlabelled pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing clips")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_clips < 1 or args.num_unlabeled < 0 or args.workers < 1:
        parser.error("--num-clips must be at least 1, --num-unlabeled at least 0, --workers at least 1")
    manifests = generate_demo_dataset(
        args.output, args.num_clips, args.seed, num_unlabeled=args.num_unlabeled, workers=args.workers
    )
    print(
        f"wrote {args.num_clips} clips (+ {args.num_unlabeled} unlabelled) to {os.path.join(args.output, 'clips')}; "
        "manifests: " + ", ".join(manifests.values())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
