"""Closed-set scoring: each candidate label's log-likelihood as the answer, and a distribution over the label set.

Free generation can answer outside the label set; scoring ranks the set itself. A candidate's score is the summed
log-probability of its answer tokens (the label and the closing `<|im_end|>`, so a label that is a prefix of another
is not favoured) given the prompt and media; softmax over the candidates gives the distribution.

Two ways to compute it, equal up to float rounding (tested):

- `candidate_log_likelihoods` (used by the pipeline and the evaluation runner): one prefill per prompt, with a cache;
  every candidate then continues from that cache in one batched step. The clip is encoded and the Emotion World
  Module runs once per sample, not once per candidate.
- `closed_set_probabilities`: one full forward per (sample, candidate) sequence, answers marked by `labels` (the
  training collator's `collate_candidates` builds them); the reference the first is checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch_layout import labels_at
from .processing_affectverse import answer_token_ids

IGNORE_INDEX = -100


@torch.no_grad()
def answer_log_likelihood(model, inputs: dict) -> torch.Tensor:
    """`(N,)` summed log-probability of the tokens that `inputs["labels"]` marks, per sequence (eval mode, rho = 1)."""
    labels = inputs["labels"]
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
    kept = getattr(outputs, "kept_index", None)
    if kept is not None:  # positions were removed (WETR): the labels of the positions the logits cover
        labels = labels_at(labels, kept)
    log_probs = F.log_softmax(outputs.logits[:, :-1].float(), dim=-1)  # (N, L-1, V): position t predicts t+1
    target = labels[:, 1:]
    scored = target != IGNORE_INDEX
    picked = log_probs.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (N, L-1)
    return (picked * scored).sum(1)


def closed_set_probabilities(model, inputs: dict, num_candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-likelihoods and probabilities `(B, C)` of C candidates for B samples (rows of `inputs`: B x C, by sample)."""
    scores = answer_log_likelihood(model, inputs)
    if scores.numel() % num_candidates:
        raise ValueError(f"{scores.numel()} sequences do not split into groups of {num_candidates} candidates")
    scores = scores.view(-1, num_candidates)
    return scores, scores.softmax(dim=-1)


def candidate_token_ids(tokenizer, candidates: list[str]) -> list[list[int]]:
    """Each candidate answer as the tokens the model must produce: the answer and its closing `<|im_end|>`."""
    return [answer_token_ids(tokenizer, answer) for answer in candidates]


@torch.no_grad()
def candidate_log_likelihoods(model, prompt_inputs: dict, candidates: list[list[int]]) -> torch.Tensor:
    """`(B, C)` log p(candidate tokens | prompt) for B prompts (ending at the assistant header, left-padded, as the
    processor pads) and C candidates given as token ids, with one prefill per prompt.

    The prompts run once with a KV cache (the EWM runs there, as in generation); the cache is repeated per
    candidate and every candidate's tokens but its last are fed in one batched step, at the positions that follow
    each prompt (the thinker's text positions continue from the prompt's largest position).
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError("every candidate needs at least one token")
    attention_mask = prompt_inputs["attention_mask"]
    if not bool(attention_mask[:, -1].all()):
        raise ValueError("prompts must be left-padded (the processor's default): the last position must be real")
    outputs = model(**prompt_inputs, use_cache=True)
    last = None  # the prompt's last temporal position: needed only when a candidate has more than one token
    if max(len(c) for c in candidates) > 1:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        last = base.model.rope_deltas.to(attention_mask.device).view(-1, 1) + attention_mask.sum(1, keepdim=True) - 1
    return continue_candidates(model, outputs.logits[:, -1], outputs.past_key_values, attention_mask, last, candidates)


@torch.no_grad()
def continue_candidates(
    model,
    last_logits: torch.Tensor,
    cache,
    attention_mask: torch.Tensor,
    last: torch.Tensor | None,
    candidates: list[list[int]],
) -> torch.Tensor:
    """`(B, C)` log p(candidate | prompt) from a prefilled prompt: its last logits `(B, V)`, its KV `cache` (modified:
    repeated per candidate and extended by their tokens), its `attention_mask` `(B, L)` and `last` `(B, 1)`, the
    temporal position of its last token (the thinker's text positions continue from there).

    Shared by `candidate_log_likelihoods` and the belief stream (`belief_stream.BeliefStream`), which prefills its
    prompt piece by piece."""
    first = F.log_softmax(last_logits.float(), dim=-1)  # (B, V): the first answer token
    batch, count = attention_mask.shape[0], len(candidates)
    device = attention_mask.device
    width = max(len(c) for c in candidates)  # shapes from the host's lists: no read back from the device
    lengths = torch.tensor([len(c) for c in candidates], device=device)
    tokens = torch.tensor([c + [0] * (width - len(c)) for c in candidates], dtype=torch.long, device=device)
    scores = first[:, tokens[:, 0]]  # (B, C)
    if width == 1:
        return scores
    steps = width - 1  # feed tokens 0 .. L-2, each predicts the next
    cache.batch_repeat_interleave(count)  # (B x C) rows, candidates of a prompt consecutive
    state = getattr(cache, "wetr_state", None)
    if state is not None:  # a WETR prefill: each layer's kept prompt positions, repeated with the cache
        state["valid"] = [valid.repeat_interleave(count, dim=0) for valid in state["valid"]]
    offsets = torch.arange(1, steps + 1, device=device)
    positions = (last.to(device) + offsets).repeat_interleave(count, dim=0)  # (B x C, steps)
    fed = tokens[:, :steps].repeat(batch, 1)  # (B x C, steps)
    fed_mask = (torch.arange(steps, device=device) < (lengths - 1)[:, None]).repeat(batch, 1)
    continued = model(
        input_ids=fed,
        attention_mask=torch.cat([attention_mask.repeat_interleave(count, dim=0), fed_mask.long()], dim=1),
        position_ids=positions.unsqueeze(0).expand(3, -1, -1),
        past_key_values=cache,
        use_cache=False,
    )
    log_probs = F.log_softmax(continued.logits.float(), dim=-1)  # (B x C, steps, V)
    targets = tokens[:, 1:].repeat(batch, 1)  # (B x C, steps)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * fed_mask
    return scores + picked.sum(1).view(batch, count)


__all__ = [
    "answer_log_likelihood",
    "continue_candidates",
    "candidate_log_likelihoods",
    "candidate_token_ids",
    "closed_set_probabilities",
]
