"""Conv-Attention pre-fusion (Emotion-LLaMAv2 §4.3) as an option on the thinker: `ewm_prefusion="conv_attention"`.

Between the encoders and the language model, the video and audio feature tokens of each sample are fused by two
parallel branches, then added back to themselves:

    x_m   = GELU(Linear_D->W(f_m)) + type_m            per modality stream m (video, audio), in time order
    conv  = x + sum of N residual blocks  F <- F + SiLU(Conv1d_k3(F))        (local temporal detail, per stream)
    attn  = CrossAttentionLayer(x, [x_video; x_audio]) (pre-LN attention + FFN) (global cross-modal interaction)
    f_m  <- f_m + Linear_W->D(conv + attn)           (the output projection is zero at initialisation)

so at initialisation the model is exactly the model without pre-fusion. It runs on the merged input embeddings at
the video / audio placeholder positions, which hold exactly the encoders' outputs in the thinker's order: the same
features a module placed before the merge would see, without re-splitting the encoders' flat outputs per sample.
The EWM then reads the fused features. Deviations from the paper, and why, are in docs/design-notes.md.

Shapes: B batch, L sequence, D LLM width, W working width, N tokens of one stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ewm_layers import CrossAttentionLayer, ZeroInitLinear, masked_positions


class ConvAttentionPrefusion(nn.Module):
    """Residual, zero-initialised Conv-Attention fusion of the video and audio token streams."""

    def __init__(self, hidden: int, width: int, num_heads: int, conv_blocks: int, kernel_size: int = 3):
        super().__init__()
        self.down = nn.Linear(hidden, width)
        self.type_embedding = nn.Embedding(2, width)  # row 0 video, row 1 audio
        self.conv_in = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2)
        self.conv_blocks = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2) for _ in range(conv_blocks)
        )
        self.attention = CrossAttentionLayer(width, num_heads, ffn_ratio=2)  # SDPA: no data-dependent fast path
        self.up = ZeroInitLinear(width, hidden)  # identity at initialisation: the same logits as without pre-fusion

    def _conv(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Local branch on one stream `(B, N, W)`: rows past a sample's length are zeros, so they pad like zeros."""
        features = self.conv_in((x * valid[..., None]).transpose(1, 2))
        for block in self.conv_blocks:  # F <- F + Switch(Conv1d(F)), Switch = SiLU
            features = features + F.silu(block(features * valid[:, None]))
        return features.transpose(1, 2)

    def forward(self, inputs_embeds: torch.Tensor, masks: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
        """inputs_embeds `(B, L, D)`; per modality (video, audio) its positions `(B, L)` and the longest stream of
        the batch (a host int, so no shape is read from the device). Returns the embeddings with the fused
        features added at those positions."""
        streams, orders, valids = [], [], []
        for modality, (mask, size) in enumerate(zip(masks, sizes, strict=True)):
            order = masked_positions(mask, size)  # the stream's positions, in order
            valid = torch.arange(size, device=mask.device) < mask.sum(1, keepdim=True)  # (B, N)
            tokens = inputs_embeds.gather(1, order[..., None].expand(-1, -1, inputs_embeds.shape[-1]))
            streams.append(F.gelu(self.down(tokens)) + self.type_embedding.weight[modality])
            orders.append(order)
            valids.append(valid)
        joined, joined_valid = torch.cat(streams, dim=1), torch.cat(valids, dim=1)  # (B, N_v + N_a, W)
        # a sample without any video / audio token attends to its first slot only (its rows are discarded)
        keys_valid = joined_valid | F.pad(~joined_valid.any(1, keepdim=True), (0, joined_valid.shape[1] - 1))
        attended = self.attention(joined, joined, keys_valid)  # every token attends to both streams
        out, start = inputs_embeds, 0
        for stream, order, valid in zip(streams, orders, valids, strict=True):
            size = stream.shape[1]
            fused = self._conv(stream, valid) + attended[:, start : start + size]
            delta = self.up(fused) * valid[..., None].to(fused.dtype)  # nothing lands on a padding row's slot
            out = out.scatter_add(1, order[..., None].expand(-1, -1, out.shape[-1]), delta.to(out.dtype))
            start += size
        return out


__all__ = ["ConvAttentionPrefusion", "ZeroInitLinear"]
