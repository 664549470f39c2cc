"""1. size: EWM parameters at the 7B preset (meta device) and FLOPs of the EWM (counted by torch's FlopCounterMode on a
real forward at D=3584) against the language model (analytic, 1024 tokens: 512 video, 384 audio, 128 text)."""

from __future__ import annotations

import os

import torch
from torch.utils.flop_counter import FlopCounterMode

from modeling_affectverse.count_ewm import load_preset
from modeling_affectverse.ewm import EmotionWorldModule, count_parameters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def llm_flops(config, tokens: int) -> float:
    """Forward FLOPs of the thinker's language model over `tokens` tokens (matmuls + causal attention + LM head)."""
    text = config.get_text_config()
    d, ff, layers, vocab = text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.vocab_size
    head_dim = d // text.num_attention_heads
    kv = text.num_key_value_heads * head_dim
    per_token_layer = 2 * (d * d + 2 * d * kv + d * d + 3 * d * ff)
    attention = 2 * 2 * d * tokens * tokens / 2  # QK^T and AV, causal: on average half the context
    return tokens * (layers * per_token_layer + 2 * d * vocab) + layers * attention


def size_section() -> dict:
    """The EWM's size and its share of a forward's FLOPs."""
    config = load_preset(os.path.join(ROOT, "configuration", "affectverse-7b.json"))
    with torch.device("meta"):
        parameters = count_parameters(EmotionWorldModule(config))
    torch.manual_seed(0)
    ewm = EmotionWorldModule(config).eval()
    tokens, video, audio = 1024, 512, 384
    hidden = torch.randn(1, tokens, config.ewm_hidden_size)
    video_mask = torch.zeros(1, tokens, dtype=torch.bool)
    video_mask[0, 64 : 64 + video] = True
    audio_mask = torch.zeros(1, tokens, dtype=torch.bool)
    audio_mask[0, 64 + video : 64 + video + audio] = True
    counter = FlopCounterMode(display=False)
    with counter:  # (under no_grad the counter's module tracker trips over parameters needing grad)
        ewm(hidden, video_mask, audio_mask, torch.tensor([0.5]))  # training shape: a past and a future
    ewm_flops = counter.get_total_flops()
    total = llm_flops(config, tokens)
    return {
        "ewm_parameters": parameters,
        "ewm_flops": ewm_flops,
        "llm_flops_1024_tokens": total,
        "ewm_flops_fraction": ewm_flops / total,
        "token_split": {"video": video, "audio": audio, "text": tokens - video - audio},
    }
