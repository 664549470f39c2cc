"""The Emotion World Module (paper §3.2, Appendix D; DESIGN.md §4): pure torch.

Reads the merged multimodal input embeddings of the thinker, imagines each modality's future
from the observed past (cross-modal temporal imagination, K-step rollout), aggregates the
imagined tokens into belief tokens (MAMA, separate modules for the dual- and single-modality
regimes) and projects them back to the LLM width. Knows nothing of transformers models: it
takes a config object with the `ewm_*` fields and `ewm_hidden_size`, and tensors.

Shapes: B batch, L sequence, D LLM width, W working width, N tokens of one modality stream,
K rollout steps, Q future queries per step, n belief tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

VIDEO, AUDIO = 0, 1  # rows of the type-embedding table; the other rows are reserved (paper D.3)


@dataclass
class EWMOutput:
    """What one EWM pass produces.

    Attributes:
        belief_tokens: `(B, n_max, D)` belief tokens in LLM width, zero rows past `belief_counts`.
        belief_counts: `(B,)` belief tokens per sample: dual, single or 0 (no usable modality).
        imagination_loss: scalar, or None when no sample has a future to supervise (rho = 1).
        imagination_cosine: `(K,)` detached mean cosine per rollout step, or None like the loss.
        video_present / audio_present: `(B,)` which modalities the EWM used per sample.
        video_past_len / audio_past_len: `(B,)` tokens of each stream kept as past (0 if absent).
    """

    belief_tokens: torch.Tensor
    belief_counts: torch.Tensor
    imagination_loss: torch.Tensor | None
    imagination_cosine: torch.Tensor | None
    video_present: torch.Tensor
    audio_present: torch.Tensor
    video_past_len: torch.Tensor
    audio_past_len: torch.Tensor


@dataclass
class ModalityStream:
    """One modality's tokens gathered from the sequence, in time (= sequence) order, in W space."""

    tokens: torch.Tensor  # (B, N_max, W), zero rows past `count`
    count: torch.Tensor  # (B,)
    past_len: torch.Tensor  # (B,)
    present: torch.Tensor  # (B,) bool

    @property
    def past_mask(self) -> torch.Tensor:  # (B, N_max)
        return torch.arange(self.tokens.shape[1], device=self.tokens.device) < self.past_len[:, None]

    @property
    def future_len(self) -> torch.Tensor:  # (B,)
        return self.count - self.past_len

    def boundary(self) -> torch.Tensor:
        """Last past token per sample, `(B, W)`; zeros where the modality is absent."""
        if self.tokens.shape[1] == 0:  # absent in the whole batch
            return self.tokens.new_zeros(self.tokens.shape[0], self.tokens.shape[2])
        index = (self.past_len - 1).clamp(min=0)
        last = self.tokens[torch.arange(self.tokens.shape[0], device=index.device), index]
        return last * self.present[:, None].to(last.dtype)


def split_lengths(count: torch.Tensor, keep_ratio: torch.Tensor | None) -> torch.Tensor:
    """Past length per sample: ceil(rho * N), at least 1, at most N (DESIGN §4.3).

    Computed in float64 with a small tolerance so that e.g. rho=0.7, N=10 gives 7, not 8.
    """
    if keep_ratio is None:
        return count.clone()
    past = torch.ceil(keep_ratio.to(torch.float64) * count.to(torch.float64) - 1e-9).long()
    return torch.minimum(past.clamp(min=1), count)


def pool_future(tokens: torch.Tensor, start: torch.Tensor, length: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling of each sample's future `tokens[b, start:start+length]` to `bins`.

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


class TemporalImagination(nn.Module):
    """K-step rollout for one target modality (paper Eq. 4, D.2): blocks shared across steps."""

    def __init__(self, width: int, num_heads: int, ffn_ratio: int, num_layers: int, num_queries: int, steps: int):
        super().__init__()
        self.future_queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)  # (Q, W), shared by all steps
        self.step_embedding = nn.Embedding(steps, width)
        self.block = CrossAttentionBlock(width, num_heads, ffn_ratio, num_layers)

    def forward(self, context: torch.Tensor, context_mask: torch.Tensor, tag_self: torch.Tensor) -> torch.Tensor:
        """context `(B, C, W)` with mask `(B, C)`; returns the imagined tokens `(B, K, Q, W)`.

        Each step's context is the previous one plus the step's output, so every layer's keys and values of the
        context are projected once and extended step by step (the same numbers as re-projecting the whole context,
        without redoing the past tokens K times).
        """
        layers = self.block.layers
        projected = [layer.project_context(context) for layer in layers]  # per layer: (B, H, C, W/H) keys, values
        outputs = []
        ones = context_mask.new_ones(context.shape[0], self.future_queries.shape[0])
        for step in range(self.step_embedding.num_embeddings):
            imagined = (self.future_queries + self.step_embedding.weight[step]).expand(context.shape[0], -1, -1)
            for layer, (keys, values) in zip(layers, projected, strict=True):
                imagined = layer.attend(imagined, keys, values, context_mask)  # (B, Q, W)
            outputs.append(imagined)
            grown = [layer.project_context(imagined + tag_self) for layer in layers]  # the rollout extends its context
            projected = [(torch.cat([k, gk], dim=2), torch.cat([v, gv], dim=2))
                         for (k, v), (gk, gv) in zip(projected, grown, strict=True)]  # fmt: skip
            context_mask = torch.cat([context_mask, ones], dim=1)
        return torch.stack(outputs, dim=1)


class BeliefAggregator(nn.Module):
    """One MAMA module (paper Eq. 7, D.3): learned belief queries cross-attend to the memory bank."""

    def __init__(self, width: int, num_heads: int, ffn_ratio: int, num_layers: int, num_beliefs: int):
        super().__init__()
        self.belief_queries = nn.Parameter(torch.randn(num_beliefs, width) * 0.02)  # (n, W)
        self.block = CrossAttentionBlock(width, num_heads, ffn_ratio, num_layers)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        """memory `(B, M, W)` -> belief `(B, n, W)`."""
        queries = self.belief_queries.expand(memory.shape[0], -1, -1)
        return self.block(queries, memory, None)


class EmotionWorldModule(nn.Module):
    """Bottleneck, temporal split, cross-modal imagination, imagination loss, MAMA, up-projection."""

    def __init__(self, config):
        super().__init__()
        hidden, width = config.ewm_hidden_size, config.ewm_working_size
        heads, ratio = config.ewm_num_heads, config.ewm_ffn_ratio
        steps, queries = config.ewm_rollout_steps, config.ewm_num_future_queries
        self.config = config
        self.video_down = nn.Linear(hidden, width)
        self.audio_down = nn.Linear(hidden, width)
        self.tag_embedding = nn.Embedding(2, width)  # row 0: self, row 1: cross
        imagination = (width, heads, ratio, config.ewm_imagination_layers, queries, steps)
        self.video_imagination = TemporalImagination(*imagination)
        self.audio_imagination = TemporalImagination(*imagination)
        self.type_embedding = nn.Embedding(config.ewm_num_type_embeddings, width)
        self.memory_step_embedding = nn.Embedding(steps, width)
        layers = config.ewm_aggregation_layers
        self.aggregate_dual = BeliefAggregator(width, heads, ratio, layers, config.ewm_belief_tokens_dual)
        self.aggregate_single = BeliefAggregator(width, heads, ratio, layers, config.ewm_belief_tokens_single)
        self.boundary_proj = nn.Linear(width, width)
        self.residual_scale = nn.Parameter(torch.tensor(float(config.ewm_residual_scale_init)))
        self.up_proj = nn.Linear(width, hidden)

    # -- preparation -------------------------------------------------------------------------
    def _stream(self, hidden: torch.Tensor, mask: torch.Tensor, down: nn.Linear, keep_ratio) -> ModalityStream:
        """Gather one modality's tokens in sequence order and project them D -> W (only real tokens)."""
        count = mask.sum(1)  # (B,)
        present = count >= self.config.ewm_min_modality_tokens
        count = count * present  # a stream too short for past + future is absent (DESIGN §4.3)
        mask = mask & present[:, None]
        n_max = int(count.max()) if count.numel() else 0
        valid = torch.arange(n_max, device=hidden.device) < count[:, None]  # (B, N_max)
        tokens = hidden.new_zeros(hidden.shape[0], n_max, down.out_features)
        if n_max:
            tokens = tokens.masked_scatter(valid[..., None], down(hidden[mask]))  # row-major order matches
        past_len = split_lengths(count, keep_ratio) * present
        return ModalityStream(tokens=tokens, count=count, past_len=past_len, present=present)

    # -- imagination ---------------------------------------------------------------------------
    def _context(self, own: ModalityStream, other: ModalityStream, index: torch.Tensor):
        """Rollout context for the samples `index` whose target modality is `own` (paper Eq. 3)."""
        tag_self, tag_cross = self.tag_embedding.weight
        own_mask, other_mask = own.past_mask[index], other.past_mask[index] & other.present[index, None]
        mode = self.config.ewm_context_mode
        if mode == "self":
            other_mask = torch.zeros_like(other_mask)
        elif mode == "cross":  # own past only where the other modality is absent
            own_mask = own_mask & ~other.present[index, None]
        context = torch.cat([own.tokens[index] + tag_self, other.tokens[index] + tag_cross], dim=1)
        return context, torch.cat([own_mask, other_mask], dim=1)

    def _imagine(self, own: ModalityStream, other: ModalityStream, module: TemporalImagination):
        """Run one modality's rollout on the samples that have it; returns `(index, imagined (B', K, Q, W))`."""
        index = own.present.nonzero().squeeze(1)
        if index.numel() == 0:
            return index, None
        context, context_mask = self._context(own, other, index)
        return index, module(context, context_mask, self.tag_embedding.weight[0])

    def _imagination_terms(self, own: ModalityStream, index: torch.Tensor, imagined: torch.Tensor):
        """Per-(sample, step) loss and cosine against the pooled, detached future; plus which samples count."""
        target = pool_future(own.tokens[index].detach(), own.past_len[index], own.future_len[index], imagined.shape[2])[
            :, None
        ]  # (B', 1, Q, W): stop-gradient after the down-projection
        mse = (imagined - target).pow(2).mean(dim=(2, 3))  # (B', K)
        cosine = F.cosine_similarity(imagined, target, dim=-1).mean(dim=2)  # (B', K)
        loss = mse + self.config.ewm_cosine_weight * (1.0 - cosine)
        return loss, cosine, own.future_len[index] > 0

    # -- MAMA ------------------------------------------------------------------------------------
    def _memory(self, imagined: torch.Tensor, modality: int) -> torch.Tensor:
        """Imagined tokens + type + step embeddings, flattened to a memory bank `(B', K*Q, W)`."""
        steps = self.memory_step_embedding.weight[:, None, :]  # (K, 1, W)
        return (imagined + self.type_embedding.weight[modality] + steps).flatten(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        video_mask: torch.Tensor,
        audio_mask: torch.Tensor,
        keep_ratio: torch.Tensor | None = None,
    ) -> EWMOutput:
        """Run the EWM on a batch.

        Args:
            hidden_states: `(B, L, D)` merged multimodal input embeddings.
            video_mask / audio_mask: `(B, L)` bool, positions of video / audio tokens.
            keep_ratio: `(B,)` rho per sample, or None for rho = 1 (inference: nothing is future).
        """
        batch, device = hidden_states.shape[0], hidden_states.device
        video = self._stream(hidden_states, video_mask, self.video_down, keep_ratio)
        audio = self._stream(hidden_states, audio_mask, self.audio_down, keep_ratio)

        width = self.config.ewm_working_size
        memory_len = self.config.ewm_rollout_steps * self.config.ewm_num_future_queries
        memories, losses, cosines, supervised = [], [], [], []
        for modality, own, other, module in (
            (VIDEO, video, audio, self.video_imagination),
            (AUDIO, audio, video, self.audio_imagination),
        ):
            memory = hidden_states.new_zeros(batch, memory_len, width)
            index, imagined = self._imagine(own, other, module)
            if imagined is not None:
                memory = memory.index_copy(0, index, self._memory(imagined, modality))
                loss, cosine, has_future = self._imagination_terms(own, index, imagined)
                losses.append(loss[has_future])
                cosines.append(cosine[has_future].detach())
                supervised.append(has_future)
            memories.append(memory)

        imagination_loss = imagination_cosine = None
        if supervised and any(bool(s.any()) for s in supervised):
            imagination_loss = torch.cat(losses).mean()  # over samples x modalities with a future, and steps
            imagination_cosine = torch.cat(cosines).mean(0)  # (K,)

        beliefs = self._aggregate(video, audio, memories[VIDEO], memories[AUDIO])  # (B, n_dual, W)
        n_dual, n_single = self.config.ewm_belief_tokens_dual, self.config.ewm_belief_tokens_single
        dual, single = video.present & audio.present, video.present ^ audio.present
        counts = torch.where(dual, n_dual, torch.where(single, n_single, 0)).to(device)
        return EWMOutput(
            belief_tokens=self.up_proj(beliefs) * (torch.arange(n_dual, device=device) < counts[:, None])[..., None],
            belief_counts=counts,
            imagination_loss=imagination_loss,
            imagination_cosine=imagination_cosine,
            video_present=video.present,
            audio_present=audio.present,
            video_past_len=video.past_len,
            audio_past_len=audio.past_len,
        )

    def _aggregate(self, video: ModalityStream, audio: ModalityStream, video_memory, audio_memory) -> torch.Tensor:
        """MAMA per regime, re-joined in batch order, plus the boundary residual (paper Eq. 7)."""
        n_dual = self.config.ewm_belief_tokens_dual
        beliefs = video_memory.new_zeros(video_memory.shape[0], n_dual, video_memory.shape[-1])
        dual = (video.present & audio.present).nonzero().squeeze(1)
        if dual.numel():
            memory = torch.cat([video_memory[dual], audio_memory[dual]], dim=1)
            beliefs = beliefs.index_copy(0, dual, self.aggregate_dual(memory))
        single = (video.present ^ audio.present).nonzero().squeeze(1)
        if single.numel():
            memory = torch.where(video.present[single, None, None], video_memory[single], audio_memory[single])
            belief_single = self.aggregate_single(memory)  # (B_s, n_single, W)
            padding = belief_single.new_zeros(single.numel(), n_dual - belief_single.shape[1], belief_single.shape[-1])
            beliefs = beliefs.index_copy(0, single, torch.cat([belief_single, padding], dim=1))
        available = video.present.to(beliefs.dtype) + audio.present.to(beliefs.dtype)  # (B,)
        boundary = (video.boundary() + audio.boundary()) / available.clamp(min=1)[:, None]  # mean of last past tokens
        return beliefs + self.residual_scale * self.boundary_proj(boundary)[:, None, :]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of `module` (works on the meta device)."""
    return sum(math.prod(p.shape) for p in module.parameters())


__all__ = ["EWMOutput", "EmotionWorldModule", "count_parameters", "pool_future", "split_lengths"]
