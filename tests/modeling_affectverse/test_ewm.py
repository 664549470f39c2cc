"""Emotion World Module in isolation (pure torch, small sizes)."""

import pytest
import torch
import torch.nn.functional as F

from modeling_affectverse import AffectVerseConfig
from modeling_affectverse.ewm import AUDIO, VIDEO, EmotionWorldModule, pool_future, split_lengths

D = 24


def make_ewm(seed=0, **overrides) -> EmotionWorldModule:
    config = AffectVerseConfig(
        text_config={"hidden_size": D, "vocab_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2},
        ewm_working_size=16,
        ewm_num_heads=4,
        **overrides,
    )
    torch.manual_seed(seed)
    return EmotionWorldModule(config).eval()


def batch(lengths_video, lengths_audio, seq=40, seed=1):
    """hidden `(B, seq, D)` and masks with the given number of video / audio tokens, interleaved per sample."""
    torch.manual_seed(seed)
    hidden = torch.randn(len(lengths_video), seq, D)
    video = torch.zeros(len(lengths_video), seq, dtype=torch.bool)
    audio = torch.zeros_like(video)
    for b, (nv, na) in enumerate(zip(lengths_video, lengths_audio, strict=True)):
        video[b, 2 : 2 + nv] = True
        audio[b, 2 + nv : 2 + nv + na] = True
    return hidden, video, audio


def test_pool_future_equals_adaptive_avg_pool_per_sample():
    torch.manual_seed(0)
    tokens = torch.randn(5, 30, 7)
    start = torch.tensor([0, 3, 10, 29, 5])
    length = torch.tensor([30, 5, 20, 1, 13])
    pooled = pool_future(tokens, start, length, 8)
    for b in range(5):
        segment = tokens[b, start[b] : start[b] + length[b]]
        expected = F.adaptive_avg_pool1d(segment.T[None], 8)[0].T
        torch.testing.assert_close(pooled[b], expected, rtol=0, atol=1e-6)


def test_split_lengths():
    count = torch.tensor([10, 10, 3, 2, 7])
    rho = torch.tensor([0.7, 1.0, 0.1, 0.5, 0.3])
    assert split_lengths(count, rho).tolist() == [7, 10, 1, 1, 3]  # ceil, at least one past token
    assert split_lengths(count, None).tolist() == count.tolist()


def test_no_future_means_no_imagination_loss_and_fixed_belief_counts():
    ewm = make_ewm()
    hidden, video, audio = batch([6, 6, 0, 0, 1], [5, 0, 5, 0, 5])
    out = ewm(hidden, video, audio, keep_ratio=None)
    assert out.imagination_loss is None and out.imagination_cosine is None
    # dual 8, video-only 4, audio-only 4, none 0; a 1-token stream is absent
    assert out.belief_counts.tolist() == [8, 4, 4, 0, 4]
    assert out.video_present.tolist() == [True, True, False, False, False]
    assert torch.all(out.belief_tokens[1, 4:] == 0) and torch.all(out.belief_tokens[3] == 0)


def test_imagination_loss_and_per_step_cosine():
    ewm = make_ewm()
    hidden, video, audio = batch([6, 8], [5, 0])
    out = ewm(hidden, video, audio, keep_ratio=torch.tensor([0.5, 0.5]))
    assert torch.isfinite(out.imagination_loss) and out.imagination_loss > 0
    assert out.imagination_cosine.shape == (ewm.config.ewm_rollout_steps,)
    assert out.video_past_len.tolist() == [3, 4] and out.audio_past_len.tolist() == [3, 0]


def test_future_is_a_detached_target():
    """The imagination loss reaches the past tokens only: the future enters as a stop-gradient target."""
    ewm = make_ewm()
    hidden, video, audio = batch([6], [6])
    hidden.requires_grad_(True)
    out = ewm(hidden, video, audio, keep_ratio=torch.tensor([0.5]))
    (grad,) = torch.autograd.grad(out.imagination_loss, hidden)
    video_pos, audio_pos = video[0].nonzero().squeeze(1), audio[0].nonzero().squeeze(1)
    past = torch.cat([video_pos[:3], audio_pos[:3]])
    future = torch.cat([video_pos[3:], audio_pos[3:]])
    assert grad[0, past].abs().sum() > 0
    assert torch.all(grad[0, future] == 0)


@pytest.mark.parametrize("mode, audio_matters", [("full", True), ("cross", True), ("self", False)])
def test_context_mode_controls_what_video_imagination_sees(mode, audio_matters):
    ewm = make_ewm(ewm_context_mode=mode)
    hidden, video, audio = batch([6], [6])
    video_stream = ewm._stream(hidden, video, VIDEO, None, None)
    audio_stream = ewm._stream(hidden, audio, AUDIO, None, None)
    boundary = torch.maximum(video_stream.observed_end, audio_stream.observed_end)
    _, imagined = ewm._imagine(video_stream, audio_stream, ewm.video_imagination, boundary)
    changed = hidden.clone()
    changed[audio] += 1.0
    audio_changed = ewm._stream(changed, audio, AUDIO, None, None)
    _, imagined_changed = ewm._imagine(video_stream, audio_changed, ewm.video_imagination, boundary)
    assert (not torch.allclose(imagined, imagined_changed)) == audio_matters


def test_mixed_regime_batch_equals_samples_alone():
    ewm = make_ewm()
    hidden, video, audio = batch([6, 7, 0, 0], [5, 0, 9, 0])
    rho = torch.tensor([0.6, 0.4, 0.8, 1.0])
    together = ewm(hidden, video, audio, rho)
    losses = []
    for b in range(4):
        alone = ewm(hidden[b : b + 1], video[b : b + 1], audio[b : b + 1], rho[b : b + 1])
        torch.testing.assert_close(together.belief_tokens[b], alone.belief_tokens[0], rtol=1e-5, atol=1e-6)
        if alone.imagination_loss is not None:
            losses.append(alone.imagination_loss)
    # the batch loss averages (sample, modality) terms: here 2 + 1 + 1 terms
    assert together.imagination_loss is not None and len(losses) == 3


def test_boundary_residual_uses_alpha():
    ewm = make_ewm()
    hidden, video, audio = batch([6], [6])
    base = ewm(hidden, video, audio).belief_tokens
    with torch.no_grad():
        ewm.residual_scale.fill_(0.0)
    assert not torch.allclose(base, ewm(hidden, video, audio).belief_tokens)
