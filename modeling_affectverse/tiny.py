"""The embedded default: a tiny random AffectVerse model, its processor and synthetic clips, built offline.

Used by the demo, the tests and the benchmarks. Nothing is downloaded: the tokenizer is a
byte-level BPE trained here on the prompt vocabulary, with Qwen2.5-Omni's special tokens at
fixed ids that `configuration/tiny.json` names; the feature extractor and image/video
processors are built from their classes with small sizes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    WhisperFeatureExtractor,
)

from .configuration_affectverse import AffectVerseConfig
from .count_ewm import load_preset
from .modeling_affectverse import AffectVerseForConditionalGeneration
from .processing_affectverse import MER_LABELS, SENTIMENT_ANSWERS, SYSTEM_PROMPT, AffectVerseProcessor, task_question

# Special tokens in id order; ids 0..9 are what configuration/tiny.json names.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
)
TINY_FRAME_SIZE = 56  # 2x2 patches of 14 after 2x2 merging: 4 tokens per temporal grid
TINY_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configuration", "tiny.json")


def _corpus() -> list[str]:
    """Text the tiny BPE is trained on: the prompt vocabulary, so prompts tokenize compactly.

    The answer words also appear on their own, many times: BPE then merges each into one token as it starts an
    answer (after a newline, no leading space), so the demo's answers are one-token choices.
    """
    questions = [
        task_question("emotion", list(MER_LABELS)),
        task_question("sentiment"),
        task_question("open_vocabulary"),
    ]
    words = " ".join(MER_LABELS) + " positive negative system user assistant Subtitle: I am fine, thank you."
    answers = [*MER_LABELS, *SENTIMENT_ANSWERS]
    return [SYSTEM_PROMPT, *questions, words] * 4 + answers * 64


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the Omni special tokens (no `<|belief|>` yet)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={
            "image_token": "<|IMAGE|>",
            "audio_token": "<|AUDIO|>",
            "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>",
            "vision_eos_token": "<|vision_eos|>",
            "audio_bos_token": "<|audio_bos|>",
            "audio_eos_token": "<|audio_eos|>",
        },
    )


def build_tiny_processor(num_mel_bins: int = 20, max_length: int = 1024) -> AffectVerseProcessor:
    """The Omni processor pieces at tiny sizes, wrapped as an AffectVerseProcessor (belief token added)."""
    tokenizer = build_tiny_tokenizer()
    AffectVerseProcessor.add_belief_token(tokenizer)
    feature_extractor = WhisperFeatureExtractor(
        feature_size=num_mel_bins, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400
    )
    pixels = TINY_FRAME_SIZE * TINY_FRAME_SIZE
    size = {"shortest_edge": pixels, "longest_edge": pixels}
    image_processor = Qwen2VLImageProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, size=size)
    video_processor = Qwen2VLVideoProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, size=size)
    return AffectVerseProcessor(
        image_processor,
        video_processor,
        feature_extractor,
        tokenizer,
        max_length=max_length,
        fps=3.0,
        frame_size=TINY_FRAME_SIZE,
    )


def tiny_config(processor: AffectVerseProcessor, path: str = TINY_CONFIG, **overrides) -> AffectVerseConfig:
    """The tiny preset with the processor's token ids; raises if the preset and the tokenizer disagree."""
    config = load_preset(path, belief_token_id=processor.belief_token_id, **overrides)
    tokenizer = processor.tokenizer
    for field, token in (
        ("video_token_id", "<|VIDEO|>"),
        ("audio_token_id", "<|AUDIO|>"),
        ("image_token_id", "<|IMAGE|>"),
        ("vision_start_token_id", "<|vision_bos|>"),
        ("audio_start_token_id", "<|audio_bos|>"),
    ):
        if getattr(config, field) != tokenizer.convert_tokens_to_ids(token):
            raise ValueError(
                f"{path}: {field}={getattr(config, field)} but the tokenizer has {token} at "
                f"{tokenizer.convert_tokens_to_ids(token)}"
            )
    if len(tokenizer) > config.get_text_config().vocab_size:
        raise ValueError(f"{path}: vocab_size {config.get_text_config().vocab_size} < tokenizer size {len(tokenizer)}")
    return config


def tiny_model(processor: AffectVerseProcessor, seed: int = 0, **overrides) -> AffectVerseForConditionalGeneration:
    """A random tiny AffectVerse model (fp32, eval mode) for `processor`, deterministic for `seed`; generation stops at
    `<|im_end|>`."""
    torch.manual_seed(seed)
    model = AffectVerseForConditionalGeneration(tiny_config(processor, **overrides)).eval()
    model.configure_generation(processor.tokenizer)
    return model


def build_tiny_model(seed: int = 0, **overrides) -> tuple[AffectVerseForConditionalGeneration, AffectVerseProcessor]:
    """A random tiny AffectVerse model (fp32, eval mode) and its processor, deterministic for `seed`."""
    processor = build_tiny_processor()
    model = tiny_model(processor, seed, **overrides)
    return model, processor.follow_model_config(model.config)


def synthetic_clip(
    seconds: float = 2.0, fps: float = 3.0, size: int = TINY_FRAME_SIZE, sampling_rate: int = 16000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames `(T, size, size, 3)` uint8 of a drifting gradient and a gliding tone `(S,)` float32 (deterministic)."""
    rng = np.random.default_rng(seed)
    num_frames = max(1, round(seconds * fps))
    grid = np.linspace(0, 1, size, dtype=np.float32)
    frames = []
    for t in range(num_frames):
        phase = t / max(1, num_frames - 1)
        red = np.outer(grid, np.ones(size)) * (1 - phase) + phase * rng.uniform(0, 0.1)
        green = np.outer(np.ones(size), grid) * phase
        blue = np.full((size, size), 0.5 * (1 + np.sin(2 * np.pi * phase)))
        frames.append(np.stack([red, green, blue], axis=-1))
    frames = (np.clip(np.stack(frames), 0, 1) * 255).astype(np.uint8)
    time = np.arange(int(seconds * sampling_rate), dtype=np.float32) / sampling_rate
    pitch = 180.0 + 120.0 * time / max(seconds, 1e-6)
    wave = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / sampling_rate) + 0.01 * rng.standard_normal(time.shape)
    return frames, wave.astype(np.float32)


__all__ = [
    "MER_LABELS",
    "TINY_CONFIG",
    "build_tiny_model",
    "build_tiny_processor",
    "synthetic_clip",
    "tiny_config",
    "tiny_model",
]
