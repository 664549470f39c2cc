"""AffectVerseForConditionalGeneration on the tiny config: equivalence, generation, training forward, errors."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from modeling_affectverse import AffectVerseConfig

from ..conftest import COMBOS

LORA_TARGETS = r".*language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj"


def plain_thinker(model):
    """A Qwen2.5-Omni thinker holding the same backbone weights as `model`."""
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(model.config.to_thinker_config()).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ewm.")}
    thinker.load_state_dict(state, strict=True)
    return thinker


@pytest.mark.parametrize("combo", ["video+audio", "audio-in-video", "video", "audio", "text"])
def test_without_placeholders_logits_equal_the_plain_thinker(model, make_inputs, combo):
    inputs = make_inputs([combo], belief_placeholders=False)
    with torch.no_grad():
        ours = model(**inputs)
        theirs = plain_thinker(model)(**inputs)
    assert ours.belief_tokens is None
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=0, atol=1e-6)


def _greedy(model, inputs, use_cache):
    return model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=use_cache, pad_token_id=0)


@pytest.mark.parametrize("combo", list(COMBOS))
@pytest.mark.parametrize("batched", [False, True], ids=["single", "left-padded-batch"])
def test_greedy_generate_with_cache_equals_without(model, make_inputs, combo, batched):
    combos = [combo, combo] if batched else [combo]
    inputs = make_inputs(combos, seconds=(2.0, 1.4))
    if batched:
        assert (inputs["attention_mask"][:, 0] == 0).any() or combo == "text"
    cached, uncached = _greedy(model, inputs, True), _greedy(model, inputs, False)
    assert torch.equal(cached, uncached)
    assert cached.shape[1] == inputs["input_ids"].shape[1] + 6


@pytest.mark.parametrize("new_tokens", [1, 5, 24])
def test_ewm_runs_once_per_generate_and_belief_token_is_never_generated(model, make_inputs, processor, new_tokens):
    """The EWM runs at prefill only: decode steps are plain thinker steps, however many there are."""
    inputs = make_inputs(["video+audio"])
    calls = []
    model.ewm.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():  # make <|belief|> the most likely token everywhere
        model.lm_head.weight[processor.belief_token_id] = 50 * model.lm_head.weight.abs().max()
    out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    assert out.shape[1] - inputs["input_ids"].shape[1] == new_tokens  # every decode step really ran
    assert len(calls) == 1
    assert not (out[:, inputs["input_ids"].shape[1] :] == processor.belief_token_id).any()


def _expected_kept(input_ids, attention_mask, config, rho, video_patch=4):
    """Reference: per-sample Python loop over each modality stream, independent of the model's code (the embedded
    split: whole video patches of `video_patch` tokens, floor(rho x patches) of them; ceil(rho x N) audio tokens)."""
    kept = []
    for b in range(input_ids.shape[0]):
        keep = []
        seen = {config.video_token_id: 0, config.audio_token_id: 0}
        totals = {t: int((input_ids[b] == t).sum()) for t in seen}
        for i, token in enumerate(input_ids[b].tolist()):
            if attention_mask[b, i] == 0:
                continue
            if token in seen and totals[token] >= 2:
                if token == config.video_token_id:
                    past = max(1, int(rho * (totals[token] // video_patch) + 1e-6)) * video_patch
                else:
                    past = max(1, min(totals[token], -(-int(rho * totals[token] * 1000) // 1000)))
                seen[token] += 1
                if seen[token] > past:
                    continue
            keep.append(i)
        kept.append(keep)
    return kept


def test_training_forward_on_interleaved_sample(make_model, make_inputs, processor):
    """The embedded split (the paper's, for reproduction): the future tokens leave the LLM input, and what is left is
    positioned as the processor positions the clip cut at the same point (issue 21 item 5: no gap after the media)."""
    model = make_model(ewm_split="embedded")
    inputs = make_inputs(["audio-in-video", "audio"], seconds=(4.0, 1.6), answer="happy")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    vid, aud = model.config.video_token_id, model.config.audio_token_id
    # the sample really interleaves: a video chunk, an audio chunk, then video again
    row = ids[0][mask[0].bool()].tolist()
    first_audio = row.index(aud)
    assert vid in row[first_audio:]
    labels = ids.masked_fill(mask == 0, -100)
    answer_start = (ids == processor.belief_token_id).long().cumsum(1).argmax(1)  # last placeholder
    for b in range(2):
        labels[b, : answer_start[b] + 1] = -100

    captured = {}
    model.model.register_forward_pre_hook(lambda m, a, kw: captured.update(kw), with_kwargs=True)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, modules_to_save=["ewm"]))
    lora.train()
    out = lora(**inputs, labels=labels, keep_ratio=0.5)

    # exactly the future tokens of each stream are gone; everything else kept in order
    expected = _expected_kept(ids, mask, model.config, 0.5)
    for b in range(2):
        got = out.kept_index[b][out.kept_index[b] >= 0].tolist()
        assert got == expected[b]
        new_mask = captured["attention_mask"][b]
        assert int(new_mask.sum()) == len(expected[b])
        assert bool(new_mask[-1]) and not bool(new_mask[0]) or int(new_mask.sum()) == new_mask.numel()
        kept = out.kept_index[b] >= 0
        # positions: those of the clip cut where the split fell (2.0 s of 4.0, 0.8 s of 1.6), processed alone
        alone = make_inputs([["audio-in-video", "audio"][b]], seconds=((4.0, 1.6)[b],), seeds=[b], answer="happy",
                            keep_ratio=0.5)  # fmt: skip
        assert int(alone["attention_mask"].sum()) == int(kept.sum())
        positions, _ = model.model.get_rope_index(
            alone["input_ids"], None, alone.get("video_grid_thw"), alone["attention_mask"], b == 0,
            alone["feature_attention_mask"].sum(1), alone.get("video_second_per_grid"),
        )  # fmt: skip
        assert torch.equal(captured["position_ids"][-3:, b][:, kept], positions[:, 0])
    # labels rebuilt: the LM loss equals cross-entropy on the gathered labels
    gathered = torch.where(out.kept_index >= 0, labels.gather(1, out.kept_index.clamp(min=0)), -100)
    reference = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, out.logits.shape[-1]).float(), gathered[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, reference)
    assert torch.isfinite(out.imagination_loss) and out.imagination_loss > 0

    (out.loss + out.imagination_loss).backward()
    ewm_params = {n: p for n, p in lora.named_parameters() if ".ewm." in n and p.requires_grad}
    assert ewm_params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in ewm_params.values()), [
        n for n, p in ewm_params.items() if p.grad is None or p.grad.abs().sum() == 0
    ]
    lora_params = {n: p for n, p in lora.named_parameters() if "lora_" in n}
    assert lora_params and all(p.grad is not None for p in lora_params.values())
    assert all("language_model" in n for n in lora_params)  # never the audio/vision encoders
    frozen = [n for n, p in lora.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for n, p in lora.named_parameters() if not p.requires_grad)


def assert_batch_equals_each_sample_alone(model, make_inputs, combos, belief_counts, **batch_checks) -> None:
    """Logits (and belief tokens) of each sample in a batch equal those of the sample run alone."""
    seconds = (2.0, 1.4, 1.0, 2.0)
    batch = make_inputs(combos, seconds=seconds)
    for key, expected in batch_checks.items():
        assert bool(batch[key]) == expected
    assert (batch["attention_mask"][:, 0] == 0).any()  # left-padded
    with torch.no_grad():
        together = model(**batch)
        for b, combo in enumerate(combos):
            alone_inputs = make_inputs([combo], seconds=(seconds[b],), seeds=[b])
            alone = model(**alone_inputs)
            length = int(alone_inputs["attention_mask"][0].sum())
            assert int(batch["attention_mask"][b].sum()) == length
            torch.testing.assert_close(together.logits[b, -length:], alone.logits[0], rtol=1e-4, atol=1e-5)
            n = int(together.belief_counts[b])
            assert n == belief_counts[b]
            if combo == "text":  # no placeholders alone: the EWM does not run at all
                assert alone.belief_tokens is None
                continue
            assert int(alone.belief_counts[0]) == n
            torch.testing.assert_close(together.belief_tokens[b, :n], alone.belief_tokens[0, :n], rtol=1e-4, atol=1e-5)


def test_mixed_batch_equals_each_sample_alone(model, make_inputs):
    assert_batch_equals_each_sample_alone(model, make_inputs, ["video+audio", "video", "audio", "text"], (8, 4, 4, 0))


def test_audio_in_video_batch_with_silent_and_separate_samples(model, make_inputs):
    """One `use_audio_in_video` flag per call, yet modality dropout puts plain video samples next to interleaved
    ones: each sample must still get the positions (and logits) it gets alone."""
    combos = ["audio-in-video", "video", "video+audio", "audio"]
    assert_batch_equals_each_sample_alone(model, make_inputs, combos, (8, 4, 8, 4), use_audio_in_video=True)


def test_errors_name_the_problem(model, make_inputs, processor):
    inputs = make_inputs(["video+audio"])
    broken = dict(inputs)
    ids = broken["input_ids"].clone()
    first = int((ids[0] == processor.belief_token_id).nonzero()[0])
    ids[0, first] = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    broken["input_ids"] = ids
    with pytest.raises(ValueError, match="placeholder count does not match"):
        model(**broken)
    with pytest.raises(ValueError, match="attention_mask is required"):
        model(**{k: v for k, v in inputs.items() if k != "attention_mask"})
    with pytest.raises(ValueError, match="without video_grid_thw"):
        model(**{k: v for k, v in inputs.items() if k != "video_grid_thw"})
    text_only = make_inputs(["text"])
    ids = text_only["input_ids"].clone()
    ids[0, -1] = processor.belief_token_id  # a placeholder with no modality to fill it
    with pytest.raises(ValueError, match="expected 0"):
        model(**{**text_only, "input_ids": ids})
    with pytest.raises(ValueError, match="keep_ratio"):
        model(**inputs, keep_ratio=0.0)


def test_belief_token_id_must_be_in_vocab(processor):
    with pytest.raises(ValueError, match="belief_token_id"):
        AffectVerseConfig(text_config={"vocab_size": 100}, belief_token_id=100)


def test_sharded_training_gives_a_batch_without_a_future_a_zero_imagination_loss_on_the_graph(
    model, processor, demo_manifest
):
    """ZeRO-3 records the order of the module outputs a backward passes and requires it equal on every process: a
    micro-batch of whole clips (no future) must hand back an imagination loss on the graph as a cut one does. It is
    0, with no cosine (nothing scored, so the trainer logs no imagination for it); off sharding it stays None."""
    from modeling_affectverse.data.collator import AffectVerseCollator
    from modeling_affectverse.data.manifest import load_manifest

    rows = [row for row in load_manifest(demo_manifest) if row["split"] == "train"][:2]
    whole = AffectVerseCollator.for_training(processor, modality_dropout=0.0, whole_clip_probability=1.0)(rows)
    cut = AffectVerseCollator.for_training(processor, keep_ratio_range=(0.5, 0.5), modality_dropout=0.0)(rows)
    model.train()
    assert model(**whole, use_cache=False).imagination_loss is None  # unsharded: nothing to add
    model.run_every_module(True)
    idle = model(**whole, use_cache=False)
    assert idle.imagination_loss is not None and idle.imagination_loss.requires_grad
    assert float(idle.imagination_loss) == 0.0 and idle.imagination_cosine is None
    (idle.loss + idle.imagination_loss).backward()  # the graph reaches the EWM's weights
    assert any(p.grad is not None for n, p in model.named_parameters() if n.startswith("ewm."))
    scored = model(**cut, use_cache=False)
    assert scored.imagination_loss > 0 and scored.imagination_cosine is not None  # a real one is untouched
