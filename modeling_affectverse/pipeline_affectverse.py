"""`AffectVerseEmotionPipeline`: a video / audio / subtitle in, the emotion out, for `pipeline(...)` and the Hub widget.

    from transformers import pipeline
    recognizer = pipeline(model="org/affectverse", trust_remote_code=True)
    recognizer({"video": "clip.mp4", "subtitle": "I can't believe it."})
    # {"label": "surprise", "scores": {"worried": 0.04, ...}, "generated_text": "surprise"}

The media are decoded from files (`media_affectverse`), the prompt is the paper's (Appendix A), `label` and
`scores` come from closed-set scoring over the label set (`scoring_affectverse`), `generated_text` from greedy
generation. Shipped as remote code with the exported model (registered through `custom_pipelines` in its config).
"""

from __future__ import annotations

import os
import tempfile

import torch
from transformers import Pipeline

from .emotion_lexicon import map_to_label
from .media_affectverse import decode_clip
from .processing_affectverse import MER_LABELS, SENTIMENT_ANSWERS, task_question
from .scoring_affectverse import candidate_log_likelihoods, candidate_token_ids

TASK = "affectverse-emotion-recognition"


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

    Input: a video path, or a dict with `video` / `audio` (paths; `audio` equal to `video` or absent with a video
    means the video's own soundtrack, `audio_from_video=False` silences it) and `subtitle`.
    Parameters: `task` (`emotion` default, `sentiment`, `open_vocabulary`), `label_set` (emotion; default MER's six
    classes), `max_new_tokens` (16).
    Output: `label` (the most likely candidate; for open vocabulary, the generated words), `scores` (candidate ->
    probability; None for open vocabulary), `generated_text`, and `matched_label` (the generated text mapped to the
    label set, None when it names none).
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, task=None, label_set=None, max_new_tokens=None, **kwargs):
        if kwargs:  # a misspelt option (`vidoe=`) must not be ignored silently
            raise ValueError(
                f"unknown parameter(s) {sorted(kwargs)}; this pipeline takes task, label_set, max_new_tokens"
            )
        preprocess = {}
        if task is not None:
            if task not in ("emotion", "sentiment", "open_vocabulary"):
                raise ValueError(f"task must be 'emotion', 'sentiment' or 'open_vocabulary', got {task!r}")
            preprocess["task"] = task
        if label_set is not None:
            labels = [label_set] if isinstance(label_set, str) else list(label_set)
            if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
                raise ValueError(f"label_set must be a non-empty list of non-empty labels, got {label_set!r}")
            if len(set(labels)) != len(labels):
                raise ValueError(f"label_set repeats a label: {labels}")
            preprocess["label_set"] = labels
        forward = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        return preprocess, forward, {}

    def _inputs(self, texts: list[str], media) -> dict:
        kwargs = {"padding": True, "return_tensors": "pt"}
        videos = None
        if media.video is not None:
            videos = [media.video.frames] * len(texts)
            kwargs["videos_kwargs"] = {"fps": [media.video.fps] * len(texts)}
        audio = None if media.audio is None else [media.audio.waveform] * len(texts)
        if media.audio_from_video:
            kwargs.update(load_audio_from_video=True, audio_from_video_indices=list(range(len(texts))))
        return dict(self.processor(text=texts, videos=videos, audio=audio, **kwargs))

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
        media = decode_clip(
            video, audio, fps=processor.fps, size=processor.frame_size,
            sample_rate=processor.feature_extractor.sampling_rate, max_frames=64, max_audio_seconds=30.0,
        )  # fmt: skip
        label_set = label_set or (list(MER_LABELS) if task == "emotion" else None)
        question = task_question(task, label_set)
        has_video, separate_audio = media.video is not None, media.audio is not None and not media.audio_from_video

        def prompt(answer=None):
            return processor.build_prompt(
                question, subtitle=inputs.get("subtitle") or None, video=has_video, audio=separate_audio, answer=answer
            )

        candidates = label_set if task == "emotion" else list(SENTIMENT_ANSWERS) if task == "sentiment" else []
        generation = self._inputs([prompt()], media)
        return {"generation": generation, "candidates": candidates, "label_set": label_set}

    def _forward(self, model_inputs, max_new_tokens: int = 16):
        generation = model_inputs["generation"]
        length = generation["input_ids"].shape[1]
        with torch.no_grad():
            generated = self.model.generate(**generation, max_new_tokens=max_new_tokens, do_sample=False)
        probabilities = None
        if model_inputs["candidates"]:  # closed-set scoring from one prefill of the same prompt
            ids = candidate_token_ids(self.processor.tokenizer, model_inputs["candidates"])
            probabilities = candidate_log_likelihoods(self.model, generation, ids).softmax(dim=-1)
        return {
            "generated": generated[:, length:],
            "probabilities": probabilities,
            "candidates": model_inputs["candidates"],
            "label_set": model_inputs["label_set"],
        }

    def postprocess(self, model_outputs):
        text = self.processor.tokenizer.decode(model_outputs["generated"][0], skip_special_tokens=True).strip()
        candidates, probabilities = model_outputs["candidates"], model_outputs["probabilities"]
        if probabilities is None:
            return {"label": text, "scores": None, "generated_text": text, "matched_label": None}
        scores = {c: float(p) for c, p in zip(candidates, probabilities[0].tolist(), strict=True)}
        return {
            "label": max(scores, key=scores.get),
            "scores": scores,
            "generated_text": text,
            "matched_label": map_to_label(text, candidates),
        }


__all__ = ["TASK", "AffectVerseEmotionPipeline"]
