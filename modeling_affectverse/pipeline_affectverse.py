"""`AffectVerseEmotionPipeline`: a video / audio / subtitle in, the emotion out, for `pipeline(...)` and the Hub widget.

    from transformers import pipeline
    recognizer = pipeline("video-classification", model="org/affectverse", trust_remote_code=True)
    recognizer("clip.mp4")  # a path or the file's bytes: [{"label": "surprise", "score": 0.71}, ...], best first
    recognizer({"video": "clip.mp4", "subtitle": "I can't believe it."}, return_details=True)
    # {"label": "surprise", "scores": {"worried": 0.04, ...}, "generated_text": "surprise", "matched_label": ...}
    recognizer("clip.mp4", trajectory=True)["trajectory"]  # the belief trajectory, observed fraction 0.1 ... 1.0
    # {"fractions": [0.1, ...], "labels": [...], "probabilities": [[...], ...], "frame_index": [...], "frames": [...]}

It follows the Hub's `video-classification` contract (what the widget and Inference Endpoints send and expect): the
clip as a path or raw bytes (no URL is fetched), `top_k` (default 5), and a list of `{label, score}` sorted by score.
The media are decoded from files (`media_affectverse`), the prompt is the paper's (Appendix A), and the scores come
from closed-set scoring over the label set (`scoring_affectverse`). `return_details=True` gives the full answer,
with the greedily generated text as well. Shipped as remote code with the exported model (`custom_pipelines`).
"""

from __future__ import annotations

import math
import os
import tempfile

import torch
from tqdm.auto import tqdm
from transformers import Pipeline

from .emotion_lexicon import map_to_label
from .media_affectverse import observed_media
from .processing_affectverse import MER_LABELS, SENTIMENT_ANSWERS, TASKS, task_question
from .scoring_affectverse import candidate_log_likelihoods, candidate_token_ids

TASK = "video-classification"  # the Hub task whose contract the default output follows
TRAJECTORY_FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 11))  # the paper's case study: 10% ... 100%


def trajectory_fractions(value) -> list[float]:
    """The observed fractions of a `trajectory` option: True gives 0.1, 0.2, ..., 1.0; a list is checked, sorted,
    and completed with 1.0 (the whole clip, whose probabilities are the pipeline's own)."""
    if value is True:
        return list(TRAJECTORY_FRACTIONS)
    try:
        fractions = sorted({float(f) for f in value})
    except (TypeError, ValueError):
        raise ValueError(f"trajectory must be True or a list of fractions in (0, 1], got {value!r}") from None
    if not fractions or not all(0 < f <= 1 and math.isfinite(f) for f in fractions):
        raise ValueError(f"trajectory fractions must lie in (0, 1], got {value!r}")
    return fractions if fractions[-1] == 1.0 else [*fractions, 1.0]


def _as_path(value, folder: str, name: str):
    """A media field as a path: bytes are written to a file in `folder`; paths and None pass through."""
    if isinstance(value, bytes | bytearray):
        if not value:
            raise ValueError(f"{name}: empty file bytes")
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(value)
        return path
    return None if value is None else os.fspath(value)


class AffectVerseEmotionPipeline(Pipeline):
    """Emotion recognition from a clip.

    Input: a video path or its bytes, or a dict with `video` / `audio` (paths or bytes; `audio` equal to `video` or
    absent with a video means the video's own soundtrack, `audio_from_video=False` silences it) and `subtitle`.
    Parameters: `task` (`emotion` default, `sentiment`, `open_vocabulary`), `label_set` (emotion; default MER's six
    classes), `top_k` (5), `return_details` (False), `max_new_tokens` (16, for the generated text). `batch_size` is
    accepted; clips are processed one at a time (clips of different lengths are not padded into one batch).
    Output: `[{"label", "score"}, ...]`, the `top_k` best candidates by probability; for open vocabulary (no closed
    set to score) one entry, the generated words with score None. With `return_details=True`: `label` (the most
    likely candidate; for open vocabulary, the generated words), `scores` (candidate -> probability; None for open
    vocabulary), `generated_text`, and `matched_label` (the generated text mapped to the label set, or None).

    `trajectory=True` (or a list of fractions) adds the belief trajectory of the paper's case study (§4.4) to the
    detailed answer: for each observed fraction f the probabilities of each label when only the first f of the
    frames and of the audio is seen (`media_affectverse.observed_prefix`, the evaluation runner's keep-ratio rule).
    `trajectory` holds `fractions`, `labels`, `probabilities` (one row per fraction), `frame_index` (the last
    observed frame, -1 without video) and `frames` (that frame, `(H, W, 3)` uint8, None without video). Closed-set
    tasks only. The fractions are the update times of one belief stream (`model.belief_stream`): each pushes what
    its cut adds, the media prefix is prefilled once, and each row equals the one-shot scoring of the cut clip
    (processed without the token budget); fraction 1.0 is the pipeline's own probabilities.
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, inputs, **kwargs):
        kwargs.pop("batch_size", None)  # one clip at a time (see the class docstring)
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        task=None,
        label_set=None,
        max_new_tokens=None,
        top_k=None,
        return_details=None,
        trajectory=None,
        **kwargs,
    ):
        if kwargs:  # a misspelt option (`vidoe=`) must not be ignored silently
            raise ValueError(
                f"unknown parameter(s) {sorted(kwargs)}; this pipeline takes task, label_set, max_new_tokens, "
                "top_k, return_details, trajectory"
            )
        preprocess = {}
        if trajectory is not None and trajectory is not False:
            if task == "open_vocabulary":
                raise ValueError("trajectory needs a closed label set: task 'emotion' or 'sentiment'")
            preprocess["trajectory"] = trajectory_fractions(trajectory)
            return_details = True
        if task is not None:
            if task not in TASKS:
                raise ValueError(f"task must be one of {TASKS}, got {task!r}")
            preprocess["task"] = task
        if label_set is not None and task not in (None, "emotion"):
            raise ValueError(
                f"label_set is for task 'emotion' (the classes to choose among); task {task!r} does not take one "
                "(sentiment answers positive / negative, open_vocabulary any emotion words)"
            )
        if label_set is not None:
            labels = [label_set] if isinstance(label_set, str) else list(label_set)
            if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
                raise ValueError(f"label_set must be a non-empty list of non-empty labels, got {label_set!r}")
            if len(set(labels)) != len(labels):
                raise ValueError(f"label_set repeats a label: {labels}")
            preprocess["label_set"] = labels
        forward, postprocess = {}, {}
        if max_new_tokens is not None:
            if (
                isinstance(max_new_tokens, bool)
                or not isinstance(max_new_tokens, int)
                or not 1 <= max_new_tokens <= 256
            ):
                raise ValueError(f"max_new_tokens must be an integer in [1, 256], got {max_new_tokens!r}")
            forward["max_new_tokens"] = max_new_tokens
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
            postprocess["top_k"] = top_k
        if return_details is not None:
            forward["generate"] = postprocess["return_details"] = bool(return_details)
        return preprocess, forward, postprocess

    def preprocess(self, inputs, task: str = "emotion", label_set: list[str] | None = None, trajectory=None):
        if isinstance(inputs, str | os.PathLike | bytes | bytearray):
            inputs = {"video": inputs}
        if not isinstance(inputs, dict):
            raise ValueError(
                f"input must be a video path, file bytes or a dict of video / audio / subtitle, got "
                f"{type(inputs).__name__}"
            )
        unknown = sorted(set(inputs) - {"video", "audio", "subtitle", "audio_from_video"})
        if unknown:
            raise ValueError(f"unknown input field(s) {unknown}; expected video, audio, subtitle, audio_from_video")
        with tempfile.TemporaryDirectory() as folder:  # bytes (what the Hub widget sends) become files to decode
            inputs = {k: _as_path(v, folder, k) if k in ("video", "audio") else v for k, v in inputs.items()}
            return self._preprocess(inputs, task, label_set, trajectory)

    def _preprocess(self, inputs: dict, task: str, label_set: list[str] | None, trajectory=None):
        video, audio = inputs.get("video"), inputs.get("audio")
        if video is not None and audio is None and inputs.get("audio_from_video", True):
            audio = video  # the clip's own soundtrack
        if video is None and audio is None and not inputs.get("subtitle"):
            raise ValueError("the input has no video, no audio and no subtitle: nothing to recognise")
        processor = self.processor
        media = processor.decode(video, audio)
        label_set = label_set or (list(MER_LABELS) if task == "emotion" else None)
        prompt = processor.build_prompt(
            task_question(task, label_set),
            subtitle=inputs.get("subtitle") or None,
            video=media.video is not None,
            audio=media.audio is not None and not media.audio_from_video,
        )
        candidates = label_set if task == "emotion" else list(SENTIMENT_ANSWERS) if task == "sentiment" else []
        generation = dict(processor.from_clips([prompt], [media]))
        steps = []
        for fraction in trajectory or []:
            seen = observed_media(media, fraction) if fraction < 1 else media
            index = -1 if seen.video is None else len(seen.video.frames) - 1
            steps.append(
                {
                    "fraction": fraction,
                    "frames": 0 if seen.video is None else len(seen.video.frames),  # what the cut keeps
                    "samples": 0 if seen.audio is None else len(seen.audio.waveform),
                    "frame_index": index,
                    "frame": None if seen.video is None else seen.video.frames[index],
                }
            )
        return {
            "generation": generation,
            "candidates": candidates,
            "label_set": label_set,
            "trajectory": steps,
            "media": media if steps else None,
            "stream": {"task": task, "label_set": label_set, "subtitle": inputs.get("subtitle") or None},
        }

    def _forward(self, model_inputs, max_new_tokens: int = 16, generate: bool = False):
        generation = model_inputs["generation"]
        length = generation["input_ids"].shape[1]
        generated = None
        if generate or not model_inputs["candidates"]:  # the list output of a closed set needs no generated text
            with torch.no_grad():
                generated = self.model.generate(**generation, max_new_tokens=max_new_tokens, do_sample=False)
            generated = generated[:, length:]
        probabilities = None
        if model_inputs["candidates"]:  # closed-set scoring from one prefill of the same prompt
            ids = candidate_token_ids(self.processor.tokenizer, model_inputs["candidates"])
            probabilities = candidate_log_likelihoods(self.model, generation, ids).softmax(dim=-1)
        steps = model_inputs.get("trajectory") or []
        rows = self._trajectory(model_inputs, probabilities[0]) if steps else []
        return {
            "generated": generated,
            "probabilities": probabilities,
            "candidates": model_inputs["candidates"],
            "label_set": model_inputs["label_set"],
            "trajectory": [
                {**{k: v for k, v in step.items() if k not in ("frames", "samples")}, "probabilities": row}
                for step, row in zip(steps, rows, strict=True)
            ],
        }

    def _trajectory(self, model_inputs: dict, whole: torch.Tensor) -> list[torch.Tensor]:
        """One row of probabilities per fraction, from one belief stream (`belief_stream.BeliefStream`): each
        fraction's cut is pushed as what it adds to the previous one, and the stream's update equals the one-shot
        scoring of that cut (without the token budget). Fraction 1.0 is the pipeline's own probabilities (`whole`,
        the clip as the pipeline scores it); a clip without video and audio has nothing to observe partially."""
        media, steps = model_inputs["media"], model_inputs["trajectory"]
        if media.video is None and media.audio is None:
            return [whole for _ in steps]
        stream = self.model.belief_stream(
            self.processor,
            **model_inputs["stream"],
            video=media.video is not None,
            audio=media.audio is not None,
            audio_from_video=media.audio_from_video,
            fps=None if media.video is None else media.video.fps,
        )
        rows, frames, samples, row = [], 0, 0, None
        for step in tqdm(steps, desc="belief trajectory"):
            if step["fraction"] == 1:
                rows.append(whole)
                continue
            new_frames = None if step["frames"] == frames else media.video.frames[frames : step["frames"]]
            new_wave = None if step["samples"] == samples else media.audio.waveform[samples : step["samples"]]
            if new_frames is not None or new_wave is not None:  # a cut that adds nothing repeats the last row
                update = stream.push(new_frames, new_wave)
                row = torch.tensor([update.probabilities[c] for c in model_inputs["candidates"]])
            frames, samples = step["frames"], step["samples"]
            rows.append(row)
        stream.close()
        return rows

    def postprocess(self, model_outputs, top_k: int = 5, return_details: bool = False):
        generated = model_outputs["generated"]
        text = None if generated is None else self.processor.tokenizer.decode(generated[0], skip_special_tokens=True)
        text = None if text is None else text.strip()
        candidates, probabilities = model_outputs["candidates"], model_outputs["probabilities"]
        if probabilities is None:  # open vocabulary: no closed set, no distribution
            if return_details:
                return {"label": text, "scores": None, "generated_text": text, "matched_label": None}
            return [{"label": text, "score": None}]
        scores = {c: float(p) for c, p in zip(candidates, probabilities[0].tolist(), strict=True)}
        if not return_details:
            ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:top_k]
            return [{"label": label, "score": score} for label, score in ranked]
        details = {
            "label": max(scores, key=scores.get),
            "scores": scores,
            "generated_text": text,
            "matched_label": map_to_label(text, candidates),
        }
        steps = model_outputs.get("trajectory") or []
        if steps:
            details["trajectory"] = {
                "fractions": [step["fraction"] for step in steps],
                "labels": list(candidates),
                "probabilities": [[float(p) for p in step["probabilities"].tolist()] for step in steps],
                "frame_index": [step["frame_index"] for step in steps],
                "frames": [step["frame"] for step in steps],
            }
        return details


__all__ = ["TASK", "TRAJECTORY_FRACTIONS", "AffectVerseEmotionPipeline", "trajectory_fractions"]
