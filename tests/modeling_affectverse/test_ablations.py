"""Every ablation switch (README, "Ablations") changes exactly what it should and nothing else."""

import os

import pytest
import torch
import torch.nn.functional as F
from peft import get_peft_model
from safetensors import safe_open

from modeling_affectverse import AffectVerseConfig
from modeling_affectverse.ewm import AUDIO, VIDEO, EmotionWorldModule, pool_future
from modeling_affectverse.tiny import build_tiny_model
from training.adapters import affectverse_lora_config

from ..conftest import build_inputs
from .test_ewm import batch, make_ewm
from .test_modeling import plain_thinker


def ewm_names(model) -> set[str]:
    return {name.split(".")[1] for name, _ in model.named_parameters() if name.startswith("ewm.")}


# -- Table 3 (a) / Table 4 "None": LoRA only -------------------------------------------------------------------
def test_lora_only_is_exactly_the_thinker_and_its_adapter_holds_no_ewm(tmp_path):
    model, processor = build_tiny_model(ewm_belief_construction="none")
    assert model.ewm is None and processor.belief_injection == "none"
    inputs = build_inputs(processor, ["video+audio", "audio", "text"])  # not a mixed audio-in-video batch: the
    assert not (inputs["input_ids"] == processor.belief_token_id).any()  # thinker mis-positions those (by design)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, plain_thinker(model)(**inputs).logits, rtol=0, atol=1e-6)
    peft_model = get_peft_model(model, affectverse_lora_config(processor.belief_token_id, with_ewm=False))
    peft_model.save_pretrained(tmp_path)
    with safe_open(os.path.join(tmp_path, "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all("lora_" in k for k in keys)  # no EWM, no belief-token row
    with_placeholders = build_inputs(build_tiny_model()[1], ["video"])  # a processor that inserts them
    with pytest.raises(ValueError, match="no Emotion World Module"):
        model(**with_placeholders)


# -- Table 4: random tokens, pooling ---------------------------------------------------------------------------
def test_random_tokens_do_not_depend_on_the_input_and_do_not_imagine():
    model, processor = build_tiny_model(ewm_belief_construction="random_tokens")
    assert ewm_names(model) == {"free_beliefs", "up_proj"}
    first = build_inputs(processor, ["video+audio", "video"], seeds=[0, 1], keep_ratio=0.5)
    second = build_inputs(processor, ["video+audio", "video"], seeds=[5, 6], seconds=(3.0,), keep_ratio=0.5)
    assert "future_layout" not in first  # the processor follows the model: nothing is imagined, no future to encode
    with torch.no_grad():
        a = model(**first)
        b = model(**second)
    torch.testing.assert_close(a.belief_tokens, b.belief_tokens, rtol=0, atol=0)
    assert not torch.equal(a.belief_tokens[0], a.belief_tokens[1])  # dual and single regimes have their own tokens
    assert a.imagination_loss is None and a.kept_index is None  # the input is the cut clip: nothing to drop


def test_pooling_reads_only_the_observed_past():
    ewm = make_ewm(ewm_belief_construction="pooling")
    assert not hasattr(ewm, "video_imagination") and not hasattr(ewm, "aggregate_dual")
    hidden, video, audio = batch([6], [6])
    rho = torch.tensor([0.5])
    out = ewm(hidden, video, audio, rho)
    assert out.imagination_loss is None
    future = hidden.clone()
    future[0, video[0].nonzero().squeeze(1)[3:]] += 5.0  # the last 3 of 6 video tokens: the future at rho 0.5
    torch.testing.assert_close(ewm(future, video, audio, rho).belief_tokens, out.belief_tokens, rtol=0, atol=0)
    past = hidden.clone()
    past[0, video[0].nonzero().squeeze(1)[:3]] += 5.0
    assert not torch.allclose(ewm(past, video, audio, rho).belief_tokens, out.belief_tokens)
    # the dual regime: n/2 tokens pooled from each modality's past, then up-projected
    with torch.no_grad():
        streams = [ewm._stream(hidden, m, i, rho, None) for i, m in ((VIDEO, video), (AUDIO, audio))]
        pooled = [pool_future(s.tokens, torch.zeros(1, dtype=torch.long), s.past_len, 4) for s in streams]
        torch.testing.assert_close(out.belief_tokens, ewm.up_proj(torch.cat(pooled, dim=1)))


# -- Table 3 (b)-(f): aggregation, injection, boundary residual --------------------------------------------------
def test_mean_aggregation_pools_the_imagined_tokens_without_mama():
    ewm = make_ewm(ewm_aggregation="mean", ewm_boundary_residual=False)
    assert not {"aggregate_dual", "aggregate_single", "type_embedding", "boundary_proj"} & set(
        dict(ewm.named_children())
    )
    hidden, video, audio = batch([6], [6])
    out = ewm(hidden, video, audio)
    streams = [ewm._stream(hidden, m, i, None, None) for i, m in ((VIDEO, video), (AUDIO, audio))]
    boundary = torch.maximum(streams[0].observed_end, streams[1].observed_end)
    imagined = [
        ewm._imagine(streams[0], streams[1], ewm.video_imagination, boundary)[1],
        ewm._imagine(streams[1], streams[0], ewm.audio_imagination, boundary)[1],
    ]
    start, length = torch.zeros(1, dtype=torch.long), torch.tensor([imagined[0].shape[1] * imagined[0].shape[2]])
    pooled = [pool_future(x.flatten(1, 2), start, length, 4) for x in imagined]
    torch.testing.assert_close(out.belief_tokens, ewm.up_proj(torch.cat(pooled, dim=1)))


def test_boundary_residual_switch_removes_exactly_the_residual():
    with_residual = make_ewm()
    without = make_ewm(ewm_boundary_residual=False)
    assert set(dict(with_residual.named_children())) - set(dict(without.named_children())) == {"boundary_proj"}
    assert "residual_scale" not in dict(without.named_parameters())
    missing, unexpected = with_residual.load_state_dict(without.state_dict(), strict=False)
    assert sorted(missing) == ["boundary_proj.bias", "boundary_proj.weight", "residual_scale"] and not unexpected
    hidden, video, audio = batch([6], [6])
    with torch.no_grad():
        with_residual.residual_scale.zero_()  # alpha = 0: then the two give the same numbers
    torch.testing.assert_close(with_residual(hidden, video, audio).belief_tokens,
                               without(hidden, video, audio).belief_tokens)  # fmt: skip


def test_single_injection_puts_every_placeholder_before_the_answer():
    model, processor = build_tiny_model(ewm_injection="single")
    assert processor.belief_injection == "single"
    text = processor.insert_belief_placeholders(processor.build_prompt("q?", video=True, audio=True), True, True)
    assert text.endswith("<|im_start|>assistant\n" + "<|belief|>" * 8)
    inputs = build_inputs(processor, ["video+audio", "audio"])
    ids = inputs["input_ids"]
    assert torch.equal(ids[:, -8:][0], torch.full((8,), processor.belief_token_id))
    assert (ids[1, -4:] == processor.belief_token_id).all() and (ids == processor.belief_token_id).sum() == 12
    with torch.no_grad():
        out = model(**inputs)
    assert out.belief_counts.tolist() == [8, 4]


# -- Figures 4-5: rollout steps K, belief tokens n ----------------------------------------------------------------
def test_rollout_steps_and_belief_count_set_the_shapes():
    model, processor = build_tiny_model(ewm_rollout_steps=5, ewm_belief_tokens_dual=12, ewm_belief_tokens_single=6)
    memory_shapes = []
    model.ewm.aggregate_dual.register_forward_hook(lambda module, args, out: memory_shapes.append(args[0].shape))
    inputs = build_inputs(processor, ["video+audio", "video"], keep_ratio=0.5)
    assert (inputs["input_ids"] == processor.belief_token_id).sum(1).tolist() == [12, 6]
    with torch.no_grad():
        out = model(**inputs)
        imagined = model.imagine(**inputs).pairs[VIDEO].imagined
    queries = model.config.ewm_num_future_queries
    assert imagined.shape[1:3] == (5, queries)  # (P, K, Q, W)
    assert memory_shapes[0][1] == 2 * 5 * queries  # both modalities' K x Q imagined tokens
    assert out.belief_counts.tolist() == [12, 6] and out.belief_tokens.shape[1] == 12
    assert out.imagination_cosine.shape == (5,)


# -- docs/architecture.md §4.4-4.5: time embeddings, frozen targets ----------------------------------------------------
@pytest.mark.parametrize("time_embedding", [True, False])
def test_reversing_the_observed_past_changes_the_imagination_only_with_time(time_embedding):
    """The absolute forecast (the residual one starts from the last observed token, which reversing changes)."""
    ewm = make_ewm(ewm_time_embedding=time_embedding, ewm_forecast="absolute")
    hidden, video, audio = batch([8], [8])
    times = torch.arange(hidden.shape[1], dtype=torch.float32)[None] * 0.04
    rho = torch.tensor([0.5])
    reversed_past = hidden.clone()
    for mask in (video, audio):
        past = mask[0].nonzero().squeeze(1)[:4]
        reversed_past[0, past] = hidden[0, past.flip(0)]
    with torch.no_grad():
        imagined = ewm(hidden, video, audio, rho, times).pairs[VIDEO].imagined
        flipped = ewm(reversed_past, video, audio, rho, times).pairs[VIDEO].imagined
    difference = (imagined - flipped).abs().max().item()
    if time_embedding:
        assert difference > 1e-3
    else:  # cross-attention over an unordered past: the original EWM cannot tell the two clips apart
        assert difference < 1e-5


def test_frozen_targets_do_not_follow_the_down_projection_online_ones_do():
    hidden, video, audio = batch([6], [6])
    rho = torch.tensor([0.5])
    for target, moves in (("frozen", False), ("online", True)):
        ewm = make_ewm(ewm_imagination_target=target)
        before = ewm(hidden, video, audio, rho).pairs[VIDEO].target
        with torch.no_grad():
            ewm.video_down.weight.mul_(0.01)  # what a collapsing projection does: every token towards its bias
        after = ewm(hidden, video, audio, rho).pairs[VIDEO].target
        assert (not torch.allclose(before, after)) == moves, target
    frozen = make_ewm()
    assert "target_projection" in dict(frozen.named_buffers())
    assert not any("target" in name for name, _ in frozen.named_parameters())  # never trained, never counted


def test_copy_last_and_batch_mean_baselines_are_the_stated_predictors():
    ewm = make_ewm()
    hidden, video, audio = batch([6, 7, 8], [6, 7, 5], seed=3)
    out = ewm(hidden, video, audio, torch.tensor([0.5, 0.4, 0.6]))
    weight = ewm.config.ewm_cosine_weight

    def loss(predicted, target):
        return F.mse_loss(predicted, target, reduction="none").mean((-2, -1)) + weight * (
            1 - F.cosine_similarity(predicted, target, dim=-1).mean(-1)
        )

    copy_last, batch_mean = [], []
    for pairs in out.pairs.values():
        copy_last.append(loss(pairs.copy_last[:, None].expand_as(pairs.target), pairs.target))
        batch_mean.append(loss(pairs.target.mean(0, keepdim=True).expand_as(pairs.target), pairs.target))
    expected = torch.stack([torch.cat(copy_last).mean(), torch.cat(batch_mean).mean()])
    torch.testing.assert_close(out.imagination_baselines, expected)
    stream = ewm._stream(hidden, video, VIDEO, torch.tensor([0.5, 0.4, 0.6]), None, with_targets=True)
    torch.testing.assert_close(out.pairs[VIDEO].copy_last[0], stream.targets[0, stream.past_len[0] - 1])


def test_switches_are_validated_with_the_field_named():
    for field, value in (
        ("ewm_belief_construction", "nothing"),
        ("ewm_aggregation", "max"),
        ("ewm_injection", "everywhere"),
        ("ewm_imagination_target", "ema"),
        ("ewm_time_embedding", "yes"),
        ("ewm_horizon_seconds", 0),
        ("ewm_split", "tokens"),
    ):
        with pytest.raises(ValueError, match=field):
            AffectVerseConfig(**{field: value})


def test_every_switch_builds_only_what_it_uses():
    """The EWM's modules per setting: an adapter holds nothing unused (and DDP finds no unused parameter)."""
    text = {"hidden_size": 24, "vocab_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}
    config = AffectVerseConfig(text_config=text, ewm_working_size=16, ewm_num_heads=4)
    full = set(dict(EmotionWorldModule(config).named_children()))
    assert full == {"video_down", "audio_down", "tag_embedding", "video_imagination", "audio_imagination",
                    "time_embedding", "type_embedding", "memory_step_embedding", "aggregate_dual",
                    "aggregate_single", "boundary_proj", "up_proj"}  # fmt: skip
    config.ewm_time_embedding = False
    assert set(dict(EmotionWorldModule(config).named_children())) == full - {"time_embedding"}


# -- issue 23: the residual forecast starts at copy-last and learns only a change -------------------------------------
def test_residual_forecast_starts_at_copy_last_and_trains_from_there():
    torch.manual_seed(0)
    ewm = make_ewm(ewm_forecast="residual")
    hidden, video, audio = batch([8, 6], [10, 12])
    times = torch.arange(hidden.shape[1], dtype=torch.float32)[None].expand(2, -1) * 0.04
    rho = torch.tensor([0.5, 0.4])
    pairs = ewm(hidden, video, audio, rho, times).pairs
    for modality in (VIDEO, AUDIO):
        p = pairs[modality].compact()
        # every step, every query: the last observed token in target space, exactly (the change starts at zero)
        torch.testing.assert_close(p.imagined, p.copy_last[:, None, None].expand_as(p.imagined), rtol=0, atol=0)
    absolute = make_ewm(ewm_forecast="absolute")
    assert not hasattr(absolute.video_imagination.delta, "weight")  # built only for the residual forecast
    out = ewm(hidden, video, audio, rho, times)
    out.imagination_loss.backward()
    change = ewm.video_imagination.delta
    assert change.weight.grad.abs().sum() > 0  # training moves the change first
    with torch.no_grad():
        change.weight.add_(0.1 * torch.randn_like(change.weight))
        moved = ewm(hidden, video, audio, rho, times).pairs[VIDEO].compact()
    assert (moved.imagined - moved.copy_last[:, None, None]).abs().amax() > 1e-3


def test_shuffled_targets_permute_the_targets_across_samples_and_nothing_else():
    torch.manual_seed(0)
    hidden, video, audio = batch([8, 8, 8, 8], [10, 10, 10, 10])
    times = torch.arange(hidden.shape[1], dtype=torch.float32)[None].expand(4, -1) * 0.04
    rho = torch.tensor([0.5, 0.5, 0.6, 0.4])
    plain, shuffled = make_ewm(), make_ewm(ewm_shuffled_targets=True)
    shuffled.load_state_dict(plain.state_dict())
    plain.train(), shuffled.train()
    torch.manual_seed(1)
    reference = plain(hidden, video, audio, rho, times)
    torch.manual_seed(1)
    control = shuffled(hidden, video, audio, rho, times)
    torch.testing.assert_close(control.belief_tokens, reference.belief_tokens)  # the model's input is untouched
    for modality in (VIDEO, AUDIO):
        a, b = reference.pairs[modality].compact(), control.pairs[modality].compact()
        torch.testing.assert_close(b.imagined, a.imagined)
        torch.testing.assert_close(b.copy_last, a.copy_last)
        # each row's target is another row's: a derangement of the same targets
        match = [
            [bool(torch.equal(b.target[i], a.target[j])) for j in range(len(a.target))] for i in range(len(b.target))
        ]
        assert all(sum(row) == 1 for row in match) and not any(match[i][i] for i in range(len(match)))
    assert not torch.allclose(control.imagination_loss, reference.imagination_loss)
    shuffled.eval()  # evaluation scores the real futures
    torch.testing.assert_close(
        shuffled(hidden, video, audio, rho, times).imagination_loss,
        plain.eval()(hidden, video, audio, rho, times).imagination_loss,
    )
