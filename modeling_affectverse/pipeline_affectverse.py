"""`AffectVerseEmotionPipeline`: a video / audio / subtitle in, the emotion out, for `pipeline(...)` and the Hub widget.

    from transformers import pipeline
    recognizer = pipeline("video-classification", model="org/affectverse", trust_remote_code=True)
    recognizer("clip.mp4")  # a path or the file's bytes: [{"label": "surprise", "score": 0.71}, ...], best first
    recognizer({"video": "clip.mp4", "subtitle": "I can't believe it."}, return_details=True)
    # {"label": "surprise", "scores": {"worried": 0.04, ...}, "generated_text": "surprise", "matched_label": ...}

It follows the Hub's `video-classification` contract (what the widget and Inference Endpoints send and expect): the
clip as a path or raw bytes (no URL is fetched), `top_k` (default 5), and a list of `{label, score}` sorted by score.
The media are decoded from files (`media_affectverse`), the prompt is the paper's (Appendix A), and the scores come
from closed-set scoring over the label set (`scoring_affectverse`). `return_details=True` gives the full answer,
with the greedily generated text as well. Shipped as remote code with the exported model (`custom_pipelines`).
"""

from __future__ import annotations

import os
import tempfile

import torch
from transformers import Pipeline

from .emotion_lexicon import map_to_label
from .processing_affectverse import MER_LABELS, SENTIMENT_ANSWERS, TASKS, task_question
from .scoring_affectverse import candidate_log_likelihoods, candidate_token_ids

TASK = "video-classification"  # the Hub task whose contract the default output follows


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
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, inputs, **kwargs):
        kwargs.pop("batch_size", None)  # one clip at a time (see the class docstring)
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self, task=None, label_set=None, max_new_tokens=None, top_k=None, return_details=None, **kwargs
    ):
        if kwargs:  # a misspelt option (`vidoe=`) must not be ignored silently
            raise ValueError(
                f"unknown parameter(s) {sorted(kwargs)}; this pipeline takes task, label_set, max_new_tokens"
            )
        preprocess = {}
        if task is not None:
            if task not in TASKS:
                raise ValueError(f"task must be one of {TASKS}, got {task!r}")
            preprocess["task"] = task
        if label_set is not None:
            labels = [label_set] if isinstance(label_set, str) else list(label_set)
            if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
                raise ValueError(f"label_set must be a non-empty list of non-empty labels, got {label_set!r}")
            if len(set(labels)) != len(labels):
                raise ValueError(f"label_set repeats a label: {labels}")
            preprocess["label_set"] = labels
        forward, postprocess = {}, {}
        if max_new_tokens is not None:
            forward["max_new_tokens"] = int(max_new_tokens)
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
            postprocess["top_k"] = top_k
        if return_details is not None:
            forward["generate"] = postprocess["return_details"] = bool(return_details)
        return preprocess, forward, postprocess

    def preprocess(self, inputs, task: str = "emotion", label_set: list[str] | None = None):
        if isinstance(inputs, str | os.PathLike | bytes | bytearray):
            inputs = {"video": inputs}
        if not isinstance(inputs, dict):
            raise ValueError(f"input must be a video path, file bytes or a dict of video / audio / subtitle, got "
                             f"{type(inputs).__name__}")  # fmt: skip
        unknown = sorted(set(inputs) - {"video", "audio", "subtitle", "audio_from_video"})
        if unknown:
            raise ValueError(f"unknown input field(s) {unknown}; expected video, audio, subtitle, audio_from_video")
        with tempfile.TemporaryDirectory() as folder:  # bytes (what the Hub widget sends) become files to decode
            inputs = {k: _as_path(v, folder, k) if k in ("video", "audio") else v for k, v in inputs.items()}
            return self._preprocess(inputs, task, label_set)

    def _preprocess(self, inputs: dict, task: str, label_set: list[str] | None):
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
        return {"generation": generation, "candidates": candidates, "label_set": label_set}

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
        return {
            "generated": generated,
            "probabilities": probabilities,
            "candidates": model_inputs["candidates"],
            "label_set": model_inputs["label_set"],
        }

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
        return {
            "label": max(scores, key=scores.get),
            "scores": scores,
            "generated_text": text,
            "matched_label": map_to_label(text, candidates),
        }


__all__ = ["TASK", "AffectVerseEmotionPipeline"]
