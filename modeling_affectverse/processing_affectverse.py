"""AffectVerseProcessor: the Qwen2.5-Omni processor plus belief placeholders, the paper's prompt and a token budget.

Belief placeholders (docs/architecture.md §4.7): `<|belief|>` tokens are inserted in two places per sample,
half right after the last audio/video block of the user turn and half right before the answer
(after the assistant header): 4+4 with video and audio, 2+2 with one of them, none for text only.
The model scatters its belief tokens into exactly those positions.

Token budget (docs/architecture.md §5): a sample longer than `max_length` tokens is fitted by lowering its
frame rate, then shortening its audio, with a warning; text is never cut, and a prompt whose
text alone is over the budget raises.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from transformers import AddedToken
from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import (
    Qwen2_5OmniProcessor,
    _get_feat_extract_output_lengths,
)

from .configuration_affectverse import MER_LABELS  # MER2023 / MER2024, the prompt's order
from .partial_observation import FutureLayout, FutureSegments
from .wetr import QUERY_NEG_TEXT, QUERY_POS_TEXT

IGNORE_INDEX = -100
AUDIO_TOKENS_PER_SECOND = 25  # the Omni audio encoder: 100 mel frames per second, halved twice (its position clock too)
SENTIMENT_ANSWERS = ("positive", "negative")  # what the sentiment question asks for (Appendix A)
BELIEF_TOKEN = "<|belief|>"
BELIEF_INJECTIONS = ("interleaved", "single", "none")  # where placeholders go: two places, one place, nowhere
SYSTEM_PROMPT = "You are an emotion recognition assistant"
ASSISTANT_HEADER = "<|im_start|>assistant\n"


TASKS = ("emotion", "sentiment", "open_vocabulary")  # what a manifest row, the prompt and the pipeline can ask


def answer_token_ids(tokenizer, answer: str) -> list[int]:
    """The tokens a model must produce to give `answer`: the answer and its closing `<|im_end|>`."""
    return tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]


# a plain answer, <think>...</think><answer>...</answer>, or (training) both mixed per sample
ANSWER_FORMATS = ("label", "reasoning", "joint")
REASONING_INSTRUCTION = (
    "First describe the cues in the face and the voice between <think> and </think>, "
    "then give the answer between <answer> and </answer>."
)


def reasoning_answer(reasoning: str, answer: str) -> str:
    """The target of the reasoning answer format (Emotion-LLaMAv2's stage 2, R1-style tags)."""
    return f"<think>{reasoning.strip()}</think><answer>{answer.strip()}</answer>"


def extract_answer(text: str | None) -> str | None:
    """The answer inside the last complete `<answer>...</answer>` of a reasoning-format output; None when there is
    none (no tags, or cut before `</answer>`): a malformed output, which the metrics count as unmatched."""
    if not text:
        return None
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    if start < 0:
        return None
    answer = text[start + len("<answer>") : end].strip()
    if "</answer>" in answer or "<think>" in answer or "</think>" in answer:  # tags nested or repeated: malformed
        return None
    return answer or None


def _find(sequence: list[int], piece: list[int]) -> int | None:
    """The first index where `piece` occurs in `sequence`, or None."""
    width = len(piece)
    for start in range(len(sequence) - width + 1):
        if sequence[start : start + width] == piece:
            return start
    return None


def task_question(task: str, label_set: list[str] | None = None, answer_format: str = "label") -> str:
    """The task question of the paper's prompt (Appendix A) for `emotion`, `sentiment` or `open_vocabulary`; the
    reasoning answer format appends its instruction, which also serves as the stage's task identifier."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    question = _task_question(task, label_set)
    return question if answer_format == "label" else f"{question} {REASONING_INSTRUCTION}"  # joint: as reasoning


def _task_question(task: str, label_set: list[str] | None) -> str:
    if task == "emotion":
        if not label_set:
            raise ValueError("task 'emotion' needs a label_set to list in the question")
        return (
            "Please recognize the emotion of the person in this clip. "
            f"Choose one of: {', '.join(label_set)}. Answer with the emotion word only."
        )
    if task == "sentiment":
        return "Is the sentiment of the person in this clip positive or negative? Answer positive or negative."
    if task == "open_vocabulary":
        return "List every emotion word that fits the person in this clip, separated by commas."
    raise ValueError(f"unknown task {task!r}: expected 'emotion', 'sentiment' or 'open_vocabulary'")


# The prompt format of `build_prompt` as a chat template: a user turn's content is a string or a list of
# {"type": "video" | "audio" | "text"} parts (media first, then "Subtitle: ..." and the question).
CHAT_TEMPLATE = (  # no whitespace control: the template string holds no incidental whitespace
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif part['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class AffectVerseProcessor(Qwen2_5OmniProcessor):
    """Qwen2.5-Omni processor that inserts `<|belief|>` placeholders and enforces a token budget.

    Args:
        belief_tokens_dual / belief_tokens_single: belief tokens with both / one modality
            (must equal the model config's `ewm_belief_tokens_*`).
        max_length: token budget per sample (the paper's 1024).
        fps: frame rate of the pre-decoded frames handed to the processor (the paper's 3).
        frame_size: frames are resized to `frame_size` x `frame_size` (the paper's 224; a multiple
            of patch_size * merge_size).
        belief_injection: where the placeholders go: `"interleaved"` (half after the audio/video block, half
            before the answer: the paper), `"single"` (all before the answer: Table 3 row d) or `"none"` (no
            placeholders: a model without EWM). Must match the model config; `follow_model_config` sets it.
        wetr_query_pos / wetr_query_neg: WETR's emotion-seeking and emotion-irrelevant query spans (seed 003,
            §3.3), inserted by `build_prompt(..., wetr_queries=True)` and found again by `token_roles`; one line
            each, different, no special tokens (`set_wetr_queries`). Saved with the processor.
    """

    _call_fps: list[float] | None = None  # per-video frame rates of the call in progress (after fitting)

    def __init__(
        self,
        image_processor=None,
        video_processor=None,
        feature_extractor=None,
        tokenizer=None,
        chat_template=None,
        belief_tokens_dual: int = 8,
        belief_tokens_single: int = 4,
        max_length: int = 1024,
        fps: float = 3.0,
        frame_size: int = 224,
        belief_injection: str = "interleaved",
        wetr_query_pos: str = QUERY_POS_TEXT,
        wetr_query_neg: str = QUERY_NEG_TEXT,
    ):
        if tokenizer is None or BELIEF_TOKEN not in tokenizer.get_vocab():
            raise ValueError(
                f"the tokenizer has no {BELIEF_TOKEN} token; add it first with "
                "AffectVerseProcessor.add_belief_token(tokenizer) (or build the processor with "
                "AffectVerseProcessor.from_omni_processor) and resize the model's embeddings to match"
            )
        for name in ("belief_tokens_dual", "belief_tokens_single"):
            value = locals()[name]
            if value < 2 or value % 2:
                raise ValueError(f"{name} must be an even integer >= 2, got {value}")
        if belief_injection not in BELIEF_INJECTIONS:
            raise ValueError(f"belief_injection must be one of {BELIEF_INJECTIONS}, got {belief_injection!r}")
        chat_template = chat_template or CHAT_TEMPLATE  # the paper's prompt format (build_prompt), saved with it
        super().__init__(image_processor, video_processor, feature_extractor, tokenizer, chat_template=chat_template)
        self.belief_tokens_dual = belief_tokens_dual
        self.belief_tokens_single = belief_tokens_single
        self.max_length = max_length
        self.fps = fps
        self.frame_size = frame_size
        self.belief_injection = belief_injection
        self.emotion_labels: list[str] | None = None  # set by follow_model_config for an emotion-first model
        # how a training sample is split (the model config's; follow_model_config sets them): docs/architecture.md §4.3
        self.ewm_split = "clip"
        self.ewm_horizon_seconds = 2.0
        self.imagines = True  # the model scores an imagination: the clip split's collator adds the future inputs
        self.min_modality_tokens = 2  # a modality with fewer tokens is absent for the EWM (follow_model_config sets it)
        self.belief_token = BELIEF_TOKEN
        self.belief_token_id = tokenizer.convert_tokens_to_ids(BELIEF_TOKEN)
        self.set_wetr_queries(wetr_query_pos, wetr_query_neg)

    def set_wetr_queries(self, positive: str, negative: str) -> None:
        """Set WETR's two query spans, refusing spans `token_roles` could not find again: empty, on more than one
        line, equal to each other, or carrying a special-token string."""
        for name, text in (("wetr_query_pos", positive), ("wetr_query_neg", negative)):
            if not isinstance(text, str) or not text.strip() or "\n" in text:
                raise ValueError(f"{name} must be one non-empty line of text, got {text!r}")
            if self.defuse_special_tokens(text) != text:
                raise ValueError(f"{name} must not contain special-token strings, got {text!r}")
        if positive.strip() == negative.strip():
            raise ValueError(f"wetr_query_pos and wetr_query_neg must differ, both are {positive!r}")
        self.wetr_query_pos, self.wetr_query_neg = positive, negative

    @property
    def wetr_query_lines(self) -> str:
        """The text `build_prompt(..., wetr_queries=True)` inserts: the two spans, a line each."""
        return f"{self.wetr_query_pos}\n{self.wetr_query_neg}\n"

    # -- construction ------------------------------------------------------------------------------
    @staticmethod
    def add_belief_token(tokenizer) -> int:
        """Add `<|belief|>` to `tokenizer` as a special token (no-op if present); return its id."""
        if BELIEF_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_tokens([AddedToken(BELIEF_TOKEN, special=True, normalized=False)], special_tokens=True)
        return tokenizer.convert_tokens_to_ids(BELIEF_TOKEN)

    @classmethod
    def from_omni_processor(cls, processor: Qwen2_5OmniProcessor, **kwargs) -> AffectVerseProcessor:
        """Wrap a Qwen2.5-Omni processor's components, adding `<|belief|>` to its tokenizer."""
        cls.add_belief_token(processor.tokenizer)
        return cls(
            processor.image_processor,
            processor.video_processor,
            processor.feature_extractor,
            processor.tokenizer,
            chat_template=CHAT_TEMPLATE,  # the paper's prompt format, not the Omni assistant's
            **kwargs,
        )

    def follow_model_config(self, config) -> AffectVerseProcessor:
        """Take the belief-token counts and placement from a model config (`ewm_belief_tokens_*`, `ewm_injection`;
        no placeholders when the model has no EWM), so the inputs match what the model expects. Returns self."""
        self.belief_tokens_dual = config.ewm_belief_tokens_dual
        self.belief_tokens_single = config.ewm_belief_tokens_single
        self.belief_injection = config.ewm_injection if config.ewm_belief_construction != "none" else "none"
        self.emotion_labels = config.emotion_labels  # emotion-first: the space the collator indexes labels in
        self.ewm_split, self.ewm_horizon_seconds = config.ewm_split, float(config.ewm_horizon_seconds)
        self.imagines = bool(config.imagines)
        self.min_modality_tokens = int(config.ewm_min_modality_tokens)
        return self

    # -- prompt ------------------------------------------------------------------------------------
    def build_prompt(
        self,
        question: str,
        subtitle: str | None = None,
        video: bool = False,
        audio: bool = False,
        answer: str | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        wetr_queries: bool = False,
    ) -> str:
        """The chat text of docs/architecture.md §5 / Appendix A, without belief placeholders (`__call__` adds them).

        `wetr_queries` inserts WETR's two query spans (an emotion-seeking and an emotion-irrelevant question, one
        line each) between the subtitle and the task question; `token_roles` finds them again in the tokens.

        `video` + `audio` with `load_audio_from_video=True` in `__call__` means the video's own
        track (interleaved); `audio` alone adds a separate audio block. The subtitle, the question and the answer
        are untrusted text: special-token strings in them are defused (`defuse_special_tokens`), so a subtitle
        cannot end the turn, open another one or add a media / belief placeholder.
        """
        subtitle = None if subtitle is None else self.defuse_special_tokens(subtitle)
        question = self.defuse_special_tokens(question)
        answer = None if answer is None else self.defuse_special_tokens(answer)
        media = ""
        if video:
            media += f"{self.vision_bos_token}{self.video_token}{self.vision_eos_token}"
        if audio:
            media += f"{self.audio_bos_token}{self.audio_token}{self.audio_eos_token}"
        subtitle_line = f"Subtitle: {subtitle}\n" if subtitle else ""
        queries = self.wetr_query_lines if wetr_queries else ""
        text = (
            f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
            f"<|im_start|>user\n{media}{subtitle_line}{queries}{question}<|im_end|>\n{ASSISTANT_HEADER}"
        )
        if answer is not None:
            text += f"{answer}<|im_end|>\n"
        return text

    def token_roles(self, input_ids: torch.Tensor) -> torch.Tensor:
        """`(B, L)` WETR token roles (`wetr.ROLES`) of prompts built with `build_prompt(..., wetr_queries=True)`:
        video and audio placeholders, the subtitle's words (content), the two query spans, and instruction for
        everything else. Found in the token ids: each span sits on a line of its own, so it tokenizes as it does
        alone. A prompt without the spans gets no query role (`wetr.check_roles` then refuses it)."""
        from .wetr import ROLE_AUDIO, ROLE_CONTENT, ROLE_INSTRUCTION, ROLE_QUERY_NEG, ROLE_QUERY_POS, ROLE_VISUAL

        tokenizer = self.tokenizer
        ids = input_ids.tolist()
        roles = torch.full_like(input_ids, ROLE_INSTRUCTION)
        roles[input_ids == tokenizer.convert_tokens_to_ids(self.video_token)] = ROLE_VISUAL
        roles[input_ids == tokenizer.convert_tokens_to_ids(self.audio_token)] = ROLE_AUDIO
        texts = {"pos": self.wetr_query_pos, "neg": self.wetr_query_neg, "subtitle": "Subtitle:"}
        pieces = {name: tokenizer(text, add_special_tokens=False)["input_ids"] for name, text in texts.items()}
        for b, row in enumerate(ids):
            starts = {name: _find(row, piece) for name, piece in pieces.items()}
            for name, role in (("pos", ROLE_QUERY_POS), ("neg", ROLE_QUERY_NEG)):
                if starts[name] is not None:
                    roles[b, starts[name] : starts[name] + len(pieces[name])] = role
            if starts["subtitle"] is not None and starts["pos"] is not None:  # the words between, without the newline
                roles[b, starts["subtitle"] + len(pieces["subtitle"]) : starts["pos"] - 1] = ROLE_CONTENT
        return roles

    def defuse_special_tokens(self, text: str) -> str:
        """`text` with every special-token string (`<|im_end|>`, `<|VIDEO|>`, `<|belief|>`, ...) broken by a space
        after its first character (`< |im_end|>`), so the tokenizer reads it as plain text, never as the token."""
        for token in self._special_texts():
            if token in text:
                text = text.replace(token, f"{token[0]} {token[1:]}")
        return text

    def _special_texts(self) -> list[str]:
        """The tokenizer's special-token strings, longest first; computed once per vocabulary size (every prompt
        field of every sample passes through `defuse_special_tokens`)."""
        tokenizer = self.tokenizer
        cached = getattr(self, "_special_cache", None)
        if cached is None or cached[0] != len(tokenizer):
            specials = {str(t) for t in tokenizer.all_special_tokens}
            specials |= {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
            cached = (len(tokenizer), sorted((t for t in specials if len(t) > 1), key=len, reverse=True))
            self._special_cache = cached
        return cached[1]

    def insert_belief_placeholders(self, text: str, video: bool, audio: bool) -> str:
        """Insert the placeholders into one sample's text (docs/architecture.md §4.7).

        Interleaved: first half right after the last `<|vision_eos|>` / `<|audio_eos|>`, second half right after
        the last assistant header (the end of the prompt, before any answer). Single: all of them after the
        assistant header. A text that already holds placeholders is left as it is (the model checks the count).
        """
        count = self.belief_tokens_dual if (video and audio) else self.belief_tokens_single if (video or audio) else 0
        if count == 0 or self.belief_token in text or self.belief_injection == "none":
            return text
        half = self.belief_token * (count // 2)
        media_end = max(
            text.rfind(self.vision_eos_token) + len(self.vision_eos_token),
            text.rfind(self.audio_eos_token) + len(self.audio_eos_token),
        )
        header = text.rfind(ASSISTANT_HEADER)
        if header < 0:
            raise ValueError(f"no assistant header {ASSISTANT_HEADER!r} in the prompt: cannot place belief tokens")
        answer_start = header + len(ASSISTANT_HEADER)
        if media_end > answer_start:
            raise ValueError("the audio/video block comes after the assistant header: cannot place belief tokens")
        if self.belief_injection == "single":
            return text[:answer_start] + self.belief_token * count + text[answer_start:]
        return text[:media_end] + half + text[media_end:answer_start] + half + text[answer_start:]

    def answer_labels(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, answers: list[str | None]
    ) -> torch.Tensor:
        """Labels for prompts that end with their answer (`build_prompt(answer=...)`): -100 everywhere but the answer
        and its `<|im_end|>` (the template's trailing newline is not learned), for either padding side. A None answer
        (an unlabeled row, whose prompt has none) labels nothing of its sample.

        Raises ValueError when the answer's tokens are not found at the end (the tokenizer merged them with the text
        before), rather than labelling the wrong tokens.
        """
        tail = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for i, answer in enumerate(answers):
            if answer is None:
                continue
            ids = answer_token_ids(self.tokenizer, answer)
            end = int(attention_mask[i].nonzero()[-1]) + 1 - len(tail)  # one past the answer's <|im_end|>
            start = end - len(ids)
            if input_ids[i, start:end].tolist() != ids:
                raise ValueError(f"sample {i}: the answer {answer!r} is not tokenized at the end of its prompt")
            labels[i, start:end] = input_ids[i, start:end]
        return labels

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        """The chat template (the paper's prompt format), and with `tokenize=True` the model inputs, the media decoded
        with this package's own `av` decoding (no torchcodec): a `{"type": "video", "video": path}` part is sampled at
        `self.fps` and `self.frame_size`; with `load_audio_from_video=True` its own soundtrack is used as its audio
        (interleaved); `{"type": "audio", "audio": path}` parts are separate audio. One conversation, or a list.
        """
        conversation = self._defused(conversation)
        if not kwargs.get("tokenize"):
            return super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)

        conversations = [conversation] if isinstance(conversation[0], dict) else list(conversation)
        in_video = bool(kwargs.get("load_audio_from_video"))
        texts, clips = [], []
        for messages in conversations:
            texts.append(
                super().apply_chat_template(
                    messages,
                    chat_template=chat_template,
                    add_generation_prompt=kwargs.get("add_generation_prompt", False),
                    continue_final_message=kwargs.get("continue_final_message", False),
                )
            )
            parts = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]]
            video = [p.get("video") or p.get("path") for p in parts if p.get("type") == "video"]
            sound = [p.get("audio") or p.get("path") for p in parts if p.get("type") == "audio"]
            if len(video) > 1 or len(sound) > 1:
                raise ValueError("a conversation may hold one video and one audio part (the prompt format)")
            clips.append(
                self.decode(
                    video[0] if video else None, sound[0] if sound else (video[0] if video and in_video else None)
                )
            )
        outputs = self.from_clips(texts, clips, return_tensors=kwargs.get("return_tensors") or "pt")
        return outputs if kwargs.get("return_dict", True) else outputs["input_ids"]

    def decode(self, video: str | None, audio: str | None):
        """A clip's media decoded as this processor takes them (`media_affectverse.decode_clip` at `self.fps`,
        `self.frame_size`, the feature extractor's rate; memory guards: 64 frames, 30 s of audio)."""
        from .media_affectverse import decode_clip  # imported here: only media paths need decoding

        return decode_clip(
            video,
            audio,
            fps=self.fps,
            size=self.frame_size,
            sample_rate=self.feature_extractor.sampling_rate,
            max_frames=64,
            max_audio_seconds=30.0,
        )

    def from_clips(self, texts: list[str], clips: list, return_tensors: str = "pt", **kwargs):
        """Model inputs for prompts and their decoded clips (one per text, from `decode`): each clip's frame rate,
        and its soundtrack interleaved with its video when it is the video's own track. Extra keywords go to the
        call (`max_length=None`: no token budget, as the belief stream processes a clip)."""
        videos, fps, audio, sources = [], [], [], []
        for media in clips:
            if media.video is not None:
                videos.append(media.video.frames)
                fps.append(media.video.fps)
            if media.audio is not None:
                audio.append(media.audio.waveform)
                sources.append(len(videos) - 1 if media.audio_from_video else None)
        call = {"padding": True, "return_tensors": return_tensors, "videos_kwargs": {"fps": fps}}
        if any(source is not None for source in sources):
            call.update(load_audio_from_video=True, audio_from_video_indices=sources)
        return self(text=texts, videos=videos or None, audio=audio or None, **call, **kwargs)

    def _defused(self, conversation):
        """A copy of a conversation (or a list of them) with special-token text in every text part defused."""
        if conversation and not isinstance(conversation[0], dict):
            return [self._defused(c) for c in conversation]
        messages = []
        for message in conversation:
            content = message.get("content")
            if isinstance(content, str):
                content = self.defuse_special_tokens(content)
            elif isinstance(content, list):
                content = [
                    {**p, "text": self.defuse_special_tokens(p["text"])} if p.get("type") == "text" else p
                    for p in content
                ]
            messages.append({**message, "content": content})
        return messages

    # -- processing ------------------------------------------------------------------------------
    def __call__(self, text=None, images=None, videos=None, audio=None, **kwargs):
        """Process a batch like the Omni processor, with belief placeholders and the token budget.

        Extra keywords: `max_length` (overrides the processor's budget for this call; None disables),
        `belief_placeholders` (default: unless `belief_injection` is "none"; False gives plain Qwen2.5-Omni inputs).
        Video frames are taken as already decoded at `self.fps` (no resampling).
        """
        texts = [text] if isinstance(text, str) else list(text or [])
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise ValueError("text must be a non-empty string or a list of them (the prompt; see build_prompt)")
        from_video = bool(kwargs.get("load_audio_from_video") or kwargs.get("use_audio_in_video"))
        budget = kwargs.pop("max_length", self.max_length)
        with_beliefs = kwargs.pop("belief_placeholders", self.belief_injection != "none")
        videos = None if videos is None else list(videos) if isinstance(videos, (list, tuple)) else [videos]
        audio = None if audio is None else list(audio) if isinstance(audio, (list, tuple)) else [audio]
        placed = sum(t.count(self.video_token) for t in texts)
        if placed != len(videos or []):
            raise ValueError(
                f"the text holds {placed} video placeholder(s) ({self.video_token}) but {len(videos or [])} video(s) "
                "were given" + (" (videos=None)" if videos is None else "")
            )
        if audio is not None:
            audio = [self._mono(clip, i) for i, clip in enumerate(audio)]
        if videos is not None:
            videos = [self._pixels(clip, i) for i, clip in enumerate(videos)]
        video_audio, standalone = self._audio_slots(len(videos or []), len(audio or []), from_video, kwargs)
        has_video = [self.video_token in t for t in texts]
        video_of_sample = np.cumsum(has_video) - 1  # one video per sample: video k is the k-th sample with one
        has_audio = [
            self.audio_token in t or (v and int(video_of_sample[i]) in video_audio)
            for i, (t, v) in enumerate(zip(texts, has_video, strict=True))
        ]
        # each sample's video and audio, matched once (the budget refuses a sample with more than one of either)
        media = self._sample_media(texts, video_audio, standalone, strict=budget is not None)
        if with_beliefs:
            has_video, has_audio = self._countable(videos, audio, media, has_video, has_audio)
            texts = [
                self.insert_belief_placeholders(t, v, a) for t, v, a in zip(texts, has_video, has_audio, strict=True)
            ]

        fps = kwargs.get("videos_kwargs", {}).get("fps", self.fps)
        fps = [float(f) for f in fps] if isinstance(fps, (list, tuple)) else [float(fps)] * len(videos or [])
        if len(fps) != len(videos or []):
            raise ValueError(f"videos_kwargs['fps'] lists {len(fps)} frame rates for {len(videos or [])} videos")
        if budget is not None:
            videos, audio, fps = self._fit_budget(texts, videos, audio, fps, budget, media, video_audio)

        videos_kwargs = {
            "do_sample_frames": False,
            "cap_pixels_per_frame": True,
            "size": self._frame_size_kwargs(),
            **kwargs.pop("videos_kwargs", {}),
        }
        videos_kwargs.pop("fps", None)
        self._call_fps = fps
        try:
            return super().__call__(
                text=texts, images=images, videos=videos, audio=audio, videos_kwargs=videos_kwargs, **kwargs
            )
        finally:
            self._call_fps = None

    def _sample_media(self, texts, video_audio: dict, standalone: list[int], strict: bool = True) -> list[tuple]:
        """Per sample, the index of its video and of its audio (its own standalone audio, else its video's track),
        matched by placeholder order: one video and one audio per sample, the prompt format of `build_prompt`.
        A sample with more is refused (`strict`, the token budget) or given `(None, None)`: not judged."""
        pairs, next_video, next_audio = [], 0, 0
        for i, text in enumerate(texts):
            n_video, n_audio = text.count(self.video_token), text.count(self.audio_token)
            if (n_video > 1 or n_audio > 1) and strict:
                raise ValueError(f"sample {i}: the token budget supports one video and one audio per sample")
            if n_video > 1 or n_audio > 1:
                pairs.append((None, None))
                next_video, next_audio = next_video + n_video, next_audio + n_audio
                continue
            v = next_video if n_video else None
            a = video_audio.get(v) if v is not None else None
            if n_audio:
                a = standalone[next_audio] if next_audio < len(standalone) else None
            next_video += n_video
            next_audio += n_audio
            pairs.append((v, a))
        return pairs

    def _countable(self, videos, audio, media: list[tuple], has_video, has_audio):
        """Which samples' video and audio count as present for the belief placeholders: those with at least
        `min_modality_tokens` tokens, the rule the model's Emotion World Module applies (a shorter stream is absent
        for it). A modality too short to count is still given to the LLM; it gets no belief tokens, with a warning."""
        video_ok, audio_ok = list(has_video), list(has_audio)
        for i, (v, a) in enumerate(media):
            checks = (
                ("video", v, videos, self._video_tokens, video_ok),
                ("audio", a, audio, self._audio_tokens, audio_ok),
            )
            for name, index, clips, tokens_of, present in checks:
                if index is None or clips is None or not present[i]:
                    continue
                tokens = tokens_of(len(clips[index]))
                if tokens < self.min_modality_tokens:
                    present[i] = False
                    warnings.warn(
                        f"sample {i}: its {name} ({len(clips[index])} {'frames' if name == 'video' else 'samples'}) "
                        f"gives {tokens} token(s), fewer than the {self.min_modality_tokens} the Emotion World Module "
                        f"needs: it counts as absent for the belief tokens (the answer comes from the rest)",
                        stacklevel=4,
                    )
        return video_ok, audio_ok

    @staticmethod
    def _pixels(video, index: int):
        """Frames on the 0-255 scale the video processor rescales from. Float frames whose values all lie in [0, 1]
        (torchvision's convention) are scaled to 0-255; float frames outside [0, 255] or not finite are refused.
        Integer frames pass as they are."""
        if isinstance(video, torch.Tensor):
            floating, empty = video.is_floating_point(), video.numel() == 0
        elif isinstance(video, np.ndarray):
            floating, empty = bool(np.issubdtype(video.dtype, np.floating)), video.size == 0
        else:
            return video  # frames as a list (PIL images, paths): the video processor's own conversion
        if not floating or empty:
            return video
        low, high = float(video.min()), float(video.max())
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > 255:
            raise ValueError(f"video {index}: float frames must lie in [0, 1] or [0, 255], got [{low:g}, {high:g}]")
        return video * 255 if high <= 1 else video

    def _mono(self, clip, index: int) -> np.ndarray:
        """One audio clip as a 1-D float waveform: (channels, samples) or (samples, channels) arrays are averaged
        over channels (the smaller axis); a clip too short to give one audio token is zero-padded, with a warning."""
        clip = np.asarray(clip, dtype=np.float32)
        if clip.ndim == 2:
            clip = clip.mean(axis=int(np.argmin(clip.shape)))
        if clip.ndim != 1:
            raise ValueError(f"audio {index}: expected a waveform (samples,) or (channels, samples), got {clip.shape}")
        if clip.size == 0:
            raise ValueError(f"audio {index}: empty waveform (0 samples)")
        minimum = self._min_audio_samples()
        if clip.size < minimum:
            warnings.warn(
                f"audio {index}: {clip.size} samples give no audio token; zero-padded to {minimum}", stacklevel=3
            )
            clip = np.pad(clip, (0, minimum - clip.size))
        return clip

    def _min_audio_samples(self) -> int:
        """Fewest samples that give one audio token (the encoder halves the mel frames twice)."""
        samples = self.feature_extractor.hop_length
        while self._audio_tokens(samples) < 1:
            samples += self.feature_extractor.hop_length
        return samples

    def _frame_size_kwargs(self) -> dict:
        pixels = self.frame_size * self.frame_size
        return {"shortest_edge": pixels, "longest_edge": pixels}

    def _process_audio(self, audio, **kwargs):
        """As the Omni processor, but zero-padded to the batch's longest clip plus one STFT window instead of the
        Whisper window (30 s): every real frame's features are the same (a frame sees n_fft samples around it, all
        real audio or zeros either way; the log-mel floor is each clip's own maximum - 8), and a batch of 3 s clips
        costs a tenth. The padded frames are masked out by `feature_attention_mask` as before."""
        extractor = self.feature_extractor
        longest = max(len(np.asarray(clip)) for clip in audio) if len(audio) else 0
        padded = math.ceil((longest + extractor.n_fft) / extractor.hop_length) * extractor.hop_length
        kwargs["max_length"] = min(int(extractor.n_samples), padded)
        return super()._process_audio(audio, **kwargs)

    def _process_videos(self, videos, audio=None, processed_audio=None, video_to_audio_indices=None, **kwargs):
        """As the Omni processor, but with each video's own frame rate (lowered ones included)."""
        processed = self.video_processor(videos, **kwargs["videos_kwargs"])
        fps = self._call_fps or [self.fps] * len(processed["video_grid_thw"])
        processed["video_second_per_grid"] = [self.video_processor.temporal_patch_size / f for f in fps]
        replacements = [
            self.replace_video_token(
                processed,
                video_idx=i,
                processed_audio=processed_audio,
                video_to_audio_indices=video_to_audio_indices,
                **kwargs,
            )
            for i in range(len(processed["video_grid_thw"]))
        ]
        return processed, replacements

    # -- the clip split's future segments ---------------------------------------------------------
    def future_inputs(self, futures: list, fps: list[float] | None = None) -> dict:
        """The clip split's future inputs for a batch (docs/architecture.md §4.3: each sample's future segment
        (`media_affectverse.FutureMedia`, or None) processed as a clip of its own, video and audio apart, plus the
        `FutureLayout` that says which sample each row belongs to, where it starts and how long it is.

        `fps`: each sample's frame rate (default `self.fps`). A future audio shorter than one audio token has nothing
        to score and is left out. Returns the model's `future_*` keyword arguments (empty when no sample has a
        future)."""
        fps = [self.fps] * len(futures) if fps is None else [float(f) for f in fps]
        videos, audios = [], []
        for sample, future in enumerate(futures):
            if future is None:
                continue
            if future.frames is not None and len(future.frames):
                videos.append((sample, future))
            if future.wave is not None and len(future.wave) >= self.min_audio_samples:
                audios.append((sample, future))
        outputs: dict = {}
        video = audio = FutureSegments()
        if videos:
            rates = [fps[sample] for sample, _ in videos]
            text = self.build_prompt("", video=True)
            processed = self(
                text=[text] * len(videos),
                videos=[f.frames for _, f in videos],
                videos_kwargs={"fps": rates},
                max_length=None,
                belief_placeholders=False,
                padding=True,
                return_tensors="pt",
            )
            grid = processed["video_grid_thw"]
            merge = self.video_processor.merge_size**2
            patch = self.video_processor.temporal_patch_size
            video = FutureSegments(
                sample=tuple(sample for sample, _ in videos),
                start=tuple(float(f.video_start) for _, f in videos),
                seconds=tuple(len(f.frames) / rate for (_, f), rate in zip(videos, rates, strict=True)),
                tokens=tuple(int(n) for n in (grid.prod(-1) // merge).tolist()),
                step=tuple(patch / rate for rate in rates),
                per_step=tuple(int(n) for n in (grid[:, 1] * grid[:, 2] // merge).tolist()),
            )
            outputs["future_pixel_values_videos"] = processed["pixel_values_videos"]
            outputs["future_video_grid_thw"] = grid
        if audios:
            text = self.build_prompt("", audio=True)
            processed = self(
                text=[text] * len(audios),
                audio=[f.wave for _, f in audios],
                max_length=None,
                belief_placeholders=False,
                padding=True,
                return_tensors="pt",
            )
            mask = processed["feature_attention_mask"]
            rate = self.feature_extractor.sampling_rate
            audio = FutureSegments(
                sample=tuple(sample for sample, _ in audios),
                start=tuple(float(f.audio_start) for _, f in audios),
                seconds=tuple(len(f.wave) / rate for _, f in audios),
                tokens=tuple(int(n) for n in _get_feat_extract_output_lengths(mask.sum(1)).tolist()),
                step=(1.0 / AUDIO_TOKENS_PER_SECOND,) * len(audios),
                per_step=(1,) * len(audios),
            )
            outputs["future_input_features"] = processed["input_features"]
            outputs["future_feature_attention_mask"] = mask
        if outputs:
            outputs["future_layout"] = FutureLayout(len(futures), video, audio)
        return outputs

    @property
    def min_audio_samples(self) -> int:
        """Fewest audio samples that give one audio token (a shorter clip is zero-padded to this, with a warning)."""
        return self._min_audio_samples()

    def video_tokens(self, num_frames: int) -> int:
        """Video tokens of `num_frames` frames at `frame_size` (the token budget's count)."""
        return self._video_tokens(num_frames)

    # -- token budget ------------------------------------------------------------------------------
    def _video_tokens(self, num_frames: int) -> int:
        vp = self.video_processor
        grid_t = math.ceil(num_frames / vp.temporal_patch_size)
        side = self.frame_size // vp.patch_size
        return grid_t * side * side // (vp.merge_size**2)

    def _audio_tokens(self, num_samples: int) -> int:
        frames = math.ceil(num_samples / self.feature_extractor.hop_length)
        return int(_get_feat_extract_output_lengths(frames))

    def _sample_tokens(self, text_tokens: int, frames, samples) -> int:
        """Tokens of one sample: its text plus its video frames and audio samples (either may be None)."""
        total = text_tokens
        if frames is not None:
            total += self._video_tokens(len(frames))
        if samples is not None:
            total += self._audio_tokens(len(samples))
        return total

    @staticmethod
    def _audio_slots(num_videos: int, num_audio: int, from_video: bool, kwargs: dict) -> tuple[dict, list[int]]:
        """Which audio belongs to which video's own track, and which audio stand alone (in placeholder order).

        With `load_audio_from_video`, `audio_from_video_indices[j]` is the video whose track audio j is, or None for
        a standalone audio; videos absent from it are silent. Without the list, audio j is video j's track.
        """
        if not from_video:
            return {}, list(range(num_audio))
        indices = kwargs.get("audio_from_video_indices")
        if indices is None:
            return {v: v for v in range(min(num_videos, num_audio))}, []
        return {v: j for j, v in enumerate(indices) if v is not None}, [j for j, v in enumerate(indices) if v is None]

    def _fit_budget(self, texts, videos, audio, fps, budget, media: list[tuple], video_audio: dict):
        """Fit each sample into `budget` tokens: halve its frame rate, then cut its audio (warned).

        `media`: each sample's (video, audio) indices (`_sample_media`); `video_audio` maps a video to the audio that
        is its own track (an interleaved block, whose two extra tokens count).
        """
        videos = list(videos) if videos is not None else None
        audio = list(audio) if audio is not None else None
        rate = self.feature_extractor.sampling_rate
        window = int(self.feature_extractor.n_samples)  # the Whisper window (30 s for Qwen): longer is cut
        min_frames = 2 * self.video_processor.temporal_patch_size
        for i, (text, (v, a)) in enumerate(zip(texts, media, strict=True)):
            n_video, n_audio = text.count(self.video_token), text.count(self.audio_token)
            # an interleaved audio-in-video block adds its own <|audio_bos|> and <|audio_eos|> to the text's tokens
            interleaved = 2 if v is not None and a is not None and video_audio.get(v) == a and not n_audio else 0
            text_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) - n_video - n_audio
            text_tokens += interleaved
            if text_tokens > budget:
                raise ValueError(
                    f"sample {i}: the text alone is {text_tokens} tokens, over the budget of {budget} "
                    "(text is never cut; shorten the subtitle or raise max_length)"
                )
            if a is not None and len(audio[a]) > window:
                warnings.warn(
                    f"sample {i}: audio of {len(audio[a]) / rate:.1f} s cut to {window / rate:.0f} s "
                    "(the feature extractor's window)",
                    stacklevel=3,
                )
                audio[a] = audio[a][:window]

            def count(v=v, a=a, text_tokens=text_tokens) -> int:
                return self._sample_tokens(
                    text_tokens, None if v is None else videos[v], None if a is None else audio[a]
                )

            if v is not None:
                frames_before, fps_before = len(videos[v]), fps[v]
                while count() > budget and math.ceil(len(videos[v]) / 2) >= min_frames:
                    videos[v], fps[v] = videos[v][::2], fps[v] / 2
                if len(videos[v]) != frames_before:
                    warnings.warn(
                        f"sample {i}: {frames_before} frames at {fps_before:g} fps lowered to "
                        f"{len(videos[v])} frames at {fps[v]:g} fps to fit {budget} tokens",
                        stacklevel=3,
                    )
            if count() > budget and a is not None:
                keep_tokens = self._audio_tokens(len(audio[a])) - (count() - budget)
                if keep_tokens >= 2:
                    samples = keep_tokens * 4 * self.feature_extractor.hop_length  # 4 mel frames per audio token
                    warnings.warn(
                        f"sample {i}: audio shortened from {len(audio[a])} to {samples} samples to fit {budget} tokens",
                        stacklevel=3,
                    )
                    audio[a] = np.asarray(audio[a])[:samples]
            if count() > budget:
                raise ValueError(f"sample {i}: {count()} tokens cannot be fitted into the budget of {budget}")
        return videos, audio, fps


# Copied as remote code with the processor: `AutoProcessor.from_pretrained(folder, trust_remote_code=True)`.
AffectVerseProcessor.register_for_auto_class()

__all__ = [
    "BELIEF_TOKEN",
    "CHAT_TEMPLATE",
    "MER_LABELS",
    "SENTIMENT_ANSWERS",
    "SYSTEM_PROMPT",
    "TASKS",
    "AffectVerseProcessor",
    "answer_token_ids",
    "task_question",
]
