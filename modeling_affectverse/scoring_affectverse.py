"""Closed-set scoring: each candidate label's log-likelihood as the answer, and a distribution over the label set.

Free generation can answer outside the label set; scoring ranks the set itself. A candidate's score is the summed
log-probability of its answer tokens (the label and the closing `<|im_end|>`, so a label that is a prefix of another
is not favoured) given the prompt and media; softmax over the candidates gives the distribution. The caller builds
one batch holding every (sample, candidate) sequence with `labels` marking the answer tokens, candidates of a sample
consecutive (the training collator's `collate_candidates` does this).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@torch.no_grad()
def answer_log_likelihood(model, inputs: dict) -> torch.Tensor:
    """`(N,)` summed log-probability of the tokens that `inputs["labels"]` marks, per sequence (eval mode, rho = 1)."""
    labels = inputs["labels"]
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
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


__all__ = ["answer_log_likelihood", "closed_set_probabilities"]
