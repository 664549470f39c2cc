"""Leaf pieces of the Emotion World Module (pure torch): cross-attention layers, a time embedding, the temporal split
and the batched adaptive pooling of a future segment.

Shapes: B batch, N tokens of one modality stream, W working width, H heads, C context tokens, Q queries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def split_lengths(
    count: torch.Tensor, keep_ratio: torch.Tensor | None, patch: torch.Tensor | None = None
) -> torch.Tensor:
    """Past length per sample of the embedded (token-level) split (docs/architecture.md §4.3): ceil(rho * N), at
    least 1, at most N.

    `patch` `(B,)`: tokens per temporal patch (a video's merged spatial patches). Given, the past is whole patches:
    floor(rho * patches) of them (the patches ending at or before rho of the stream), at least one, so the split
    never cuts a temporal patch. None or 1 per token: the ceiling rule above.

    rho usually arrives as float32 (0.3 is stored as 0.30000001), so rho * N is allowed to overshoot an integer by
    float32's relative precision before the ceiling counts it: 0.3 * 10 gives 3, 0.7 * 10 gives 7, 0.3 * 50 gives 15.
    """
    if keep_ratio is None:
        return count.clone()
    exact = keep_ratio.to(torch.float64) * count.to(torch.float64)
    tolerance = 1e-6 * count.to(torch.float64).clamp(min=1)  # float32 rho is within 6e-8 relative of the intended
    past = torch.ceil(exact - tolerance).long()
    if patch is not None:
        patch = patch.to(count.device).long().clamp(min=1)
        patches = count // patch
        whole = torch.floor(keep_ratio.to(torch.float64) * patches.to(torch.float64) + tolerance).long()
        past = torch.where(patch > 1, whole.clamp(min=1) * patch, past)
    return torch.minimum(past.clamp(min=1), count)


def past_length(count: int, keep_ratio: float | None, patch: int = 1) -> int:
    """`split_lengths` for one sample in plain Python (the host's copy of the rule, for shapes): the same float64
    arithmetic, so it agrees with the tensor version for every float32 rho."""
    if keep_ratio is None:
        return count
    if patch > 1:
        past = max(math.floor(keep_ratio * (count // patch) + 1e-6 * max(count, 1)), 1) * patch
    else:
        past = math.ceil(keep_ratio * count - 1e-6 * max(count, 1))
    return min(max(past, 1), count)


def bin_by_time(
    values: torch.Tensor,
    start: torch.Tensor,
    span: torch.Tensor,
    end: torch.Tensor,
    valid: torch.Tensor,
    origin: torch.Tensor,
    horizon: float,
    bins: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool a future segment into `bins` fixed time bins over `[origin, origin + horizon)` (docs/architecture.md §4.5.

    Token f of sample b covers `[start[b, f], min(start[b, f] + span[b], end[b]))` (a video patch covers its two
    frames, an audio token 40 ms; nothing reaches past the segment's real end); each bin takes the mean of the tokens
    covering it, weighted by the overlap in seconds. A bin no token covers (past the clip's end, or between two video
    patches' bins when none is that short) has no target.

    Args:
        values: `(B, F, W)` the segment's tokens; start `(B, F)` seconds; span, end, origin `(B,)` seconds;
            valid `(B, F)` bool, which slots hold a token.

    Returns:
        `(pooled (B, bins, W), filled (B, bins) bool)`; unfilled bins are zeros.
    """
    edges = origin[:, None] + horizon * torch.arange(bins + 1, device=start.device, dtype=torch.float64) / bins
    low, high = edges[:, :-1, None], edges[:, 1:, None]  # (B, bins, 1)
    token_low = start.to(torch.float64)[:, None, :]  # (B, 1, F)
    token_high = torch.minimum(token_low + span.to(torch.float64)[:, None, None], end.to(torch.float64)[:, None, None])
    overlap = (torch.minimum(high, token_high) - torch.maximum(low, token_low)).clamp(min=0)  # (B, bins, F)
    overlap = torch.where(valid[:, None, :], overlap, 0.0)
    total = overlap.sum(-1)  # (B, bins)
    filled = total > 1e-4  # a tenth of a millisecond: float error, not coverage
    weights = (overlap / total.clamp(min=1e-9)[..., None]).to(values.dtype)
    return torch.where(filled[..., None], weights @ values, 0.0), filled


def masked_positions(mask: torch.Tensor, size: int) -> torch.Tensor:
    """`(B, size)` the positions where `mask` `(B, L)` is True, in order, first `size` of them (a row with fewer
    is filled with other positions: the caller masks rows past its count). A stable sort of the mask instead of
    boolean indexing, whose output size the host would have to wait for."""
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :size]


def compaction(keep: torch.Tensor, new_len: int, left_padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The re-padded layout of the `keep` positions `(B, L)`: `(order, mask)`, both `(B, new_len)`. `order[b, j]` is
    the source position of slot j (kept positions in their order, last for left padding, first for right padding),
    `mask` which slots hold a kept position. One stable sort, no per-sample loop."""
    key = keep.int() if left_padded else (~keep).int()
    order = torch.sort(key, dim=1, stable=True).indices
    order = order[:, -new_len:] if left_padded else order[:, :new_len]
    slots = torch.arange(new_len, device=keep.device)[None]
    kept = keep.sum(1, keepdim=True)
    return order, (slots >= new_len - kept if left_padded else slots < kept)


def pool_future(tokens: torch.Tensor, start: torch.Tensor, length: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling of each sample's segment `tokens[b, start:start+length]` to `bins`.

    Batched equivalent of `F.adaptive_avg_pool1d` applied per sample (same bin edges:
    floor(i*F/bins) to ceil((i+1)*F/bins)). Returns `(B, bins, W)`; rows of samples with
    length 0 are zeros.
    """
    positions = torch.arange(tokens.shape[1], device=tokens.device)  # (N,)
    bin_index = torch.arange(bins, device=tokens.device)  # (bins,)
    lo = (bin_index[None] * length[:, None]) // bins  # (B, bins)
    hi = ((bin_index[None] + 1) * length[:, None] + bins - 1) // bins
    relative = positions[None, None] - start[:, None, None]  # (B, 1, N)
    inside = (relative >= lo[..., None]) & (relative < hi[..., None])  # (B, bins, N)
    weights = inside.to(tokens.dtype) / (hi - lo).clamp(min=1)[..., None].to(tokens.dtype)
    return weights @ tokens  # (B, bins, W)


class TimeEmbedding(nn.Module):
    """A time in seconds -> `(…, W)`: sines and cosines of periods from 0.08 s to 80 s, then a learned linear map.

    Seconds, not token indices, so that a video token and an audio token of the same instant get the same code
    (docs/architecture.md §4.4). The periods span one audio token (40 ms, Nyquist) to longer than any clip the token
    budget admits.
    """

    def __init__(self, width: int, num_frequencies: int = 16, min_period: float = 0.08, max_period: float = 80.0):
        super().__init__()
        self.num_frequencies = num_frequencies
        self.min_period, self.max_period = min_period, max_period
        self.proj = nn.Linear(2 * num_frequencies, width)

    def forward(self, seconds: torch.Tensor) -> torch.Tensor:
        """seconds `(…)` float -> `(…, W)`."""
        exponent = torch.linspace(0.0, 1.0, self.num_frequencies, device=seconds.device, dtype=torch.float32)
        periods = self.min_period * (self.max_period / self.min_period) ** exponent  # geometric, (F,)
        phase = seconds.float()[..., None] * (2 * math.pi / periods)  # (…, F)
        features = torch.cat([phase.sin(), phase.cos()], dim=-1).to(self.proj.weight.dtype)
        return self.proj(features)


class CrossAttentionLayer(nn.Module):
    """Pre-LN cross-attention (queries attend to a context, no self-attention) + GELU FFN."""

    def __init__(self, width: int, num_heads: int, ffn_ratio: int):
        super().__init__()
        self.num_heads = num_heads
        self.query_norm = nn.LayerNorm(width)
        self.context_norm = nn.LayerNorm(width)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.o_proj = nn.Linear(width, width)
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_ratio * width), nn.GELU(), nn.Linear(ffn_ratio * width, width))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, W) -> (B, H, T, W/H)
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `(B, H, C, W/H)` of a context `(B, C, W)`: per token, so a growing context can reuse them."""
        context = self.context_norm(context)
        return self._heads(self.k_proj(context)), self._heads(self.v_proj(context))

    def attend(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, context_mask) -> torch.Tensor:
        """queries `(B, Q, W)` attend to projected context; context_mask `(B, C)` bool (True = attend) or None."""
        q = self._heads(self.q_proj(self.query_norm(queries)))
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, C)
        attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, Q, W/H)
        hidden = queries + self.o_proj(attended.transpose(1, 2).flatten(2))
        return hidden + self.ffn(self.ffn_norm(hidden))

    def forward(self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        """queries `(B, Q, W)`, context `(B, C, W)`, context_mask `(B, C)` bool (True = attend)."""
        return self.attend(queries, *self.project_context(context), context_mask)


class CrossAttentionBlock(nn.Module):
    """A stack of `CrossAttentionLayer`s sharing one context."""

    def __init__(self, width: int, num_heads: int, ffn_ratio: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(CrossAttentionLayer(width, num_heads, ffn_ratio) for _ in range(num_layers))

    def forward(self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            queries = layer(queries, context, context_mask)
        return queries


class ZeroInitLinear(nn.Linear):
    """A linear layer that starts at zero (the model's `_init_weights` keeps it so): a residual branch ending in it
    adds nothing until it is trained."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


__all__ = [
    "ZeroInitLinear",
    "CrossAttentionBlock",
    "bin_by_time",
    "CrossAttentionLayer",
    "TimeEmbedding",
    "compaction",
    "masked_positions",
    "past_length",
    "pool_future",
    "split_lengths",
]
