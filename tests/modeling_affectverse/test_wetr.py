"""Issue 13 (first step): WETR's scoring core against values computed by hand, its switches, and its input checks."""

from __future__ import annotations

import math

import pytest
import torch

from modeling_affectverse.wetr import (
    ROLE_AUDIO,
    ROLE_CONTENT,
    ROLE_INSTRUCTION,
    ROLE_QUERY_NEG,
    ROLE_QUERY_POS,
    ROLE_VISUAL,
    WETRConfig,
    check_roles,
    kept_visual_grid,
    reconstruction_errors,
    reweighting,
    select,
    selection_scores,
    top_fraction,
)

# positions: instruction, v1, v2, audio, c1, c2, Q_pos, Q_neg
ROLES = torch.tensor(
    [
        [
            ROLE_INSTRUCTION,
            ROLE_VISUAL,
            ROLE_VISUAL,
            ROLE_AUDIO,
            ROLE_CONTENT,
            ROLE_CONTENT,
            ROLE_QUERY_POS,
            ROLE_QUERY_NEG,
        ]
    ]
)
ATTENTION = torch.tensor([[  # head-averaged, causal, rows sum to 1
    [1.0, 0, 0, 0, 0, 0, 0, 0],
    [0.5, 0.5, 0, 0, 0, 0, 0, 0],
    [0.3, 0.3, 0.4, 0, 0, 0, 0, 0],
    [0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0],
    [0.2, 0.3, 0.1, 0.2, 0.2, 0, 0, 0],
    [0.1, 0.2, 0.2, 0.1, 0.2, 0.2, 0, 0],
    [0.1, 0.4, 0.1, 0.2, 0.1, 0.05, 0.05, 0],
    [0.2, 0.1, 0.3, 0.1, 0.1, 0.1, 0.05, 0.05],
]])  # fmt: skip
CONFIG = WETRConfig(trigger_interval=1, delta=2.0, p_visual=0.5, p_audio=1.0, p_text=0.5, p_anchor=0.5)


def test_scores_and_the_kept_set_by_hand():
    scores = selection_scores(ATTENTION, ROLES)
    # a_pos - a_neg over the candidates v1, v2, a, c1, c2: 0.3, -0.2, 0.1, 0.0, -0.05 -> min-max: 1, 0, 0.6, 0.4, 0.3
    # support of media from the content rows: v1 0.25, v2 0.15, a 0.15 -> 1, 0, 0; of content from media rows: 0
    expected = torch.tensor([[0.0, 2.0, 0.0, 0.6, 0.4, 0.3, 0.0, 0.0]])
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-6)
    kept = select(scores, ROLES, CONFIG)  # visual ceil(0.5 x 2) = 1, audio all, content ceil(0.5 x 2) = 1
    assert kept.tolist() == [[True, True, False, True, True, False, True, True]]


def test_reweighting_by_hand():
    kept = torch.tensor([[True, True, False, True, True, False, True, True]])
    scores = torch.tensor([[0.0, 2.0, 0.0, 0.6, 0.4, 0.3, 0.0, 0.0]])
    keys = torch.zeros(1, 1, 8, 2)
    queries = torch.zeros(1, 1, 8, 2)
    keys[0, 0, 1], keys[0, 0, 3], keys[0, 0, 4] = torch.tensor([1.0, 0]), torch.tensor([0.0, 1]), torch.tensor([1.0, 1])
    queries[0, 0, 4] = torch.tensor([2.0, 0])
    out = reweighting(queries, keys, scores, ROLES, kept, CONFIG)
    # media from content {c1}: the reconstruction is k_c1 = (1, 1): e_v1 = |(0, -1)| = 1, e_a = |(-1, 0)| = 1
    # c1 from media {v1, a}: softmax(2 / sqrt 2, 0) = (0.80443, 0.19557): e_c1 = |(0.19557, 0.80443)| = 0.82787
    w = math.exp(2 / math.sqrt(2)) / (math.exp(2 / math.sqrt(2)) + 1)
    assert math.hypot(1 - w, 1 - (1 - w)) == pytest.approx(0.82787, abs=1e-5)
    torch.testing.assert_close(out["e"][0, [1, 3, 4]], torch.tensor([1.0, 1.0, 0.0]))  # normalised to [0, 1]
    # g = sigmoid(Norm(s)): Norm over (2.0, 0.6, 0.4) = (1, 0.125, 0)
    g = torch.tensor([1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-0.125)), 0.5])
    torch.testing.assert_close(out["g"][0, [1, 3, 4]], g)
    torch.testing.assert_close(out["r"][0, [1, 3, 4]], torch.tensor([0.0, 0.0, 0.5]))  # (1 - g)(1 - e)
    torch.testing.assert_close(out["c"][0, [1, 3, 4]], g * torch.tensor([1.0, 1.0, 0.0]))  # g e
    # gamma = 1 + 2 (c - r): v1 2.46212, a 2.06242, c1 0.0 -> an anchor (top ceil(0.5 x 1) of its kept modality): 1.0
    torch.testing.assert_close(out["gamma"][0, [1, 3, 4]], torch.tensor([1 + 2 * g[0], 1 + 2 * g[1], 1.0]))
    assert out["gamma"][0, [0, 2, 5, 6, 7]].tolist() == [1.0] * 5  # instruction, dropped and query tokens
    unprotected = reweighting(queries, keys, scores, ROLES, kept, WETRConfig(delta=2.0, anchors=False))
    assert unprotected["gamma"][0, 4].item() == pytest.approx(0.0)  # without anchors c1 would be silenced


def test_reconstruction_over_the_gathered_pairs_equals_the_whole_sequence_product():
    """e_i is computed on the source rows x target columns only; the same values as the (L x L) product."""
    generator = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(3, 2, 12, 4, generator=generator), torch.randn(3, 2, 12, 4, generator=generator)
    source, target = torch.rand(3, 12, generator=generator) < 0.4, torch.rand(3, 12, generator=generator) < 0.3
    target[2] = False  # a sample whose target is empty: no reconstruction, e = 0
    source &= ~target
    logits = (queries @ keys.transpose(-1, -2) / 2).masked_fill(~target[:, None, None, :], -torch.inf)
    rebuilt = torch.nan_to_num(logits.softmax(-1)) @ keys
    reference = (keys - rebuilt).norm(dim=-1).mean(1)
    reference = torch.where(source & target.any(1, keepdim=True), reference, torch.zeros_like(reference))
    errors = reconstruction_errors(queries, keys, source, target)
    torch.testing.assert_close(errors, reference)
    assert (
        (errors[~source] == 0).all() and (errors[2] == 0).all() and (errors[source & target.any(1)[:, None]] > 0).all()
    )


def test_identity_settings_keep_everything_at_weight_one():
    config = WETRConfig(p_visual=1.0, p_audio=1.0, p_text=1.0, delta=0.0)
    scores = selection_scores(ATTENTION, ROLES)
    kept = select(scores, ROLES, config)
    assert kept.all()
    out = reweighting(torch.randn(1, 2, 8, 4), torch.randn(1, 2, 8, 4), scores, ROLES, kept, config)
    assert torch.equal(out["gamma"], torch.ones(1, 8))


def test_kept_counts_are_the_ceiling_of_the_fraction():
    torch.manual_seed(0)
    scores = torch.rand(3, 50)
    mask = torch.zeros(3, 50, dtype=torch.bool)
    mask[0, :33], mask[1, 5:45], mask[2, :0] = True, True, True
    for fraction in (0.03, 0.2, 0.5, 1.0):
        kept = top_fraction(scores, mask, fraction)
        assert kept.sum(1).tolist() == [math.ceil(fraction * 33), math.ceil(fraction * 40), 0]
        assert not (kept & ~mask).any()
        for b in range(2):  # the kept ones are the highest scores
            inside = scores[b][mask[b]]
            threshold = inside.sort(descending=True).values[kept[b].sum() - 1]
            assert (scores[b][kept[b]] >= threshold).all()


def test_proxies_and_switches():
    generator = torch.Generator().manual_seed(0)
    random = selection_scores(ATTENTION, ROLES, "random", generator)
    assert (random[0, [0, 6, 7]] == 0).all() and (random[0, 1:6] > 0).all()
    positive = selection_scores(ATTENTION, ROLES, "positive")
    assert positive[0, 1] > positive[0, 2]  # Q_pos looks at v1 most
    assert select(random, ROLES, WETRConfig(select=False)).all()  # "STR only": nothing removed
    kept = select(selection_scores(ATTENTION, ROLES), ROLES, CONFIG)
    off = reweighting(torch.randn(1, 1, 8, 2), torch.randn(1, 1, 8, 2), random, ROLES, kept, WETRConfig(reweight=False))
    assert torch.equal(off["gamma"], torch.ones(1, 8))  # "NTS only"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"p_visual": 0.0}, r"p_visual must lie in \(0, 1\]"),
        ({"p_text": 1.5}, r"p_text must lie in \(0, 1\]"),
        ({"trigger_interval": 12}, "smaller than the decoder depth"),
        ({"proxy": "cosine"}, "proxy must be one of"),
        ({"gamma_anchor": 0.5}, "gamma_anchor must be >= 1"),
    ],
)
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        WETRConfig(**overrides).check(num_layers=12)


def test_defaults_trigger_every_ninth_layer_and_a_prompt_without_spans_is_refused():
    assert WETRConfig().trigger_layers(28) == [9, 18, 27]
    with pytest.raises(ValueError, match="sample"):
        check_roles(torch.tensor([[ROLE_INSTRUCTION, ROLE_VISUAL, ROLE_QUERY_POS]]))
    check_roles(ROLES)


@pytest.mark.parametrize("subtitle", ["I went to the station this morning.", None])
def test_the_processor_inserts_the_query_spans_and_finds_every_role(processor, subtitle):
    from modeling_affectverse.processing_affectverse import MER_LABELS, task_question
    from modeling_affectverse.tiny import synthetic_clip
    from modeling_affectverse.wetr import QUERY_NEG_TEXT, QUERY_POS_TEXT

    question = task_question("emotion", list(MER_LABELS))
    frames, wave = synthetic_clip(2.0, seed=0)
    short_frames, _ = synthetic_clip(1.0, seed=1)
    texts = [processor.build_prompt(question, subtitle=subtitle, video=True, wetr_queries=True),
             processor.build_prompt(question, subtitle="ok", video=True, audio=True, wetr_queries=True)]  # fmt: skip
    batch = processor(text=texts, videos=[frames, short_frames], audio=[wave], padding=True, return_tensors="pt")
    roles = processor.token_roles(batch["input_ids"])  # left-padded batch of two different prompts
    check_roles(roles)
    tokenizer = processor.tokenizer
    for b, expected_subtitle in enumerate([subtitle, "ok"]):
        ids = batch["input_ids"][b]
        assert (
            int((roles[b] == ROLE_VISUAL).sum()) == int((ids == tokenizer.convert_tokens_to_ids("<|VIDEO|>")).sum()) > 0
        )
        assert int((roles[b] == ROLE_AUDIO).sum()) == int((ids == tokenizer.convert_tokens_to_ids("<|AUDIO|>")).sum())
        assert tokenizer.decode(ids[roles[b] == ROLE_QUERY_POS]) == QUERY_POS_TEXT
        assert tokenizer.decode(ids[roles[b] == ROLE_QUERY_NEG]) == QUERY_NEG_TEXT
        content = tokenizer.decode(ids[roles[b] == ROLE_CONTENT]).strip()
        assert content == (expected_subtitle or "")
        question_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
        assert (roles[b][-len(question_ids) - 10 :] == ROLE_INSTRUCTION).any()  # the question and the template: kept
    plain = processor(text=[processor.build_prompt(question, subtitle=subtitle)], return_tensors="pt")
    with pytest.raises(ValueError, match="no Q_pos span"):
        check_roles(processor.token_roles(plain["input_ids"]))


def test_the_query_spans_are_configurable_saved_and_checked(tmp_path):
    """Other span texts: inserted, found again by `token_roles`, saved with the processor; unusable ones refused."""
    from modeling_affectverse import AffectVerseProcessor
    from modeling_affectverse.processing_affectverse import MER_LABELS, task_question
    from modeling_affectverse.tiny import build_tiny_processor

    processor = build_tiny_processor()
    processor.set_wetr_queries("How does she feel now?", "What is on the wall?")
    text = processor.build_prompt(task_question("emotion", list(MER_LABELS)), subtitle="fine", wetr_queries=True)
    assert "How does she feel now?\nWhat is on the wall?\n" in text
    ids = processor(text=[text], return_tensors="pt")["input_ids"]
    roles = processor.token_roles(ids)
    decode = processor.tokenizer.decode
    assert decode(ids[0][roles[0] == ROLE_QUERY_POS]) == "How does she feel now?"
    assert decode(ids[0][roles[0] == ROLE_QUERY_NEG]) == "What is on the wall?"
    processor.save_pretrained(tmp_path)
    loaded = AffectVerseProcessor.from_pretrained(tmp_path)
    assert (loaded.wetr_query_pos, loaded.wetr_query_neg) == ("How does she feel now?", "What is on the wall?")
    bad = {("", "x?"): "one non-empty line", ("two\nlines", "x?"): "one non-empty line",
           ("same?", "same?"): "must differ", ("<|im_end|> feel?", "x?"): "special-token"}  # fmt: skip
    for (positive, negative), message in bad.items():
        with pytest.raises(ValueError, match=message):
            processor.set_wetr_queries(positive, negative)
    assert processor.wetr_query_pos == "How does she feel now?"  # a refused pair changes nothing


def _wetr_batch(processor, combos, subtitles, first: int = 0):
    """Prompts with WETR's query spans for a list of modality combos (video+audio in-video, video, audio); sample i
    gets synthetic clip `first + i`."""
    from modeling_affectverse.processing_affectverse import MER_LABELS, task_question
    from modeling_affectverse.tiny import synthetic_clip

    question = task_question("emotion", list(MER_LABELS))
    texts, videos, audios, sources = [], [], [], []
    for i, (combo, subtitle) in enumerate(zip(combos, subtitles, strict=True), start=first):
        frames, wave = synthetic_clip(1.5 + 0.5 * i, seed=i)
        has_video, has_audio = combo in ("av", "v"), combo in ("av", "a")
        texts.append(processor.build_prompt(question, subtitle=subtitle, video=has_video,
                                            audio=has_audio and not has_video, wetr_queries=True))  # fmt: skip
        if has_video:
            videos.append(frames)
        if has_audio:
            audios.append(wave)
            sources.append(len(videos) - 1 if has_video else None)
    kwargs = {"padding": True, "return_tensors": "pt"}
    if any(s is not None for s in sources):
        kwargs.update(load_audio_from_video=True, audio_from_video_indices=sources)
    batch = dict(processor(text=texts, videos=videos or None, audio=audios or None, **kwargs))
    if any(s is not None for s in sources):
        batch["use_audio_in_video"] = True
    batch["wetr_roles"] = processor.token_roles(batch["input_ids"])
    return batch


@pytest.mark.parametrize("overrides", [{}, {"ewm_belief_construction": "none"}])  # AffectVerse and the plain thinker
@pytest.mark.parametrize("combos", [["av"], ["av", "v", "a"]])  # a single sample, a left-padded mixed batch
def test_identity_settings_give_the_unrefined_logits(make_model, processor, overrides, combos):
    from modeling_affectverse.tiny import build_tiny_processor

    model = make_model(seed=0, **overrides)
    proc = build_tiny_processor().follow_model_config(model.config) if overrides else processor  # a fresh one
    batch = _wetr_batch(proc, combos, ["I went to the station this morning.", "ok", None][: len(combos)])
    valid = batch["attention_mask"].bool()
    with torch.no_grad():
        plain = model(**{k: v for k, v in batch.items() if k != "wetr_roles"}).logits
        model.enable_wetr(WETRConfig(trigger_interval=1, p_visual=1.0, p_audio=1.0, p_text=1.0, delta=0.0))
        refined = model(**batch)
        model.disable_wetr()
    assert torch.equal(refined.kept_index[valid], torch.arange(valid.shape[1]).expand_as(valid)[valid])
    torch.testing.assert_close(refined.logits[valid], plain[valid], rtol=1e-4, atol=1e-5)
    assert (refined.kept_index < 0).sum() == (~valid).sum()  # padding stays padding


def test_later_layers_see_only_the_kept_tokens(make_model, processor):
    model = make_model(seed=0)
    batch = _wetr_batch(processor, ["av", "v"], ["I went to the station this morning.", "We talked about it."])
    roles, valid = batch["wetr_roles"], batch["attention_mask"].bool()
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda _, args, kw: seen.append(kw.get("hidden_states", args[0] if args
             else None).shape[1]), with_kwargs=True) for layer in model.model.language_model.layers]  # fmt: skip
    config = WETRConfig(trigger_interval=2, p_visual=0.25, p_audio=0.5, p_text=0.5)
    model.enable_wetr(config, record=True)
    with torch.no_grad():
        out = model(**batch)
    for hook in hooks:
        hook.remove()
    (record,) = model.wetr_record
    model.disable_wetr()
    kept = record["kept"]
    for b in range(2):
        for role, fraction in ((ROLE_VISUAL, 0.25), (ROLE_AUDIO, 0.5), (ROLE_CONTENT, 0.5)):
            count = int(((roles[b] == role) & valid[b]).sum())
            assert int((kept[b] & (roles[b] == role)).sum()) == math.ceil(fraction * count), (b, role)
        others = valid[b] & ~((roles[b] == ROLE_VISUAL) | (roles[b] == ROLE_AUDIO) | (roles[b] == ROLE_CONTENT))
        assert kept[b][others].all()  # instruction and query tokens are all kept
    lengths = kept.sum(1)
    assert seen[:2] == [valid.shape[1]] * 2 and seen[2:] == [int(lengths.max())] * 2  # layers 2, 3 see L' tokens
    assert out.logits.shape[1] == int(lengths.max()) and (out.kept_index >= 0).sum(1).tolist() == lengths.tolist()
    assert (record["gamma"][out.kept_index < 0] == 1).all()


def test_a_left_padded_sample_is_scored_and_refined_as_it_is_alone(make_model, processor):
    """In a batch, a sample with fewer scored rows than another (and left padding) gets the scores, the kept set and
    the gamma it gets alone (a padding row once made its scores NaN, silently read as all-equal)."""
    model = make_model(seed=0)
    combos, subtitles = ["av", "v"], ["I went to the station this morning and then home.", "ok"]
    config = WETRConfig(trigger_interval=2, p_visual=0.25, p_audio=0.5, p_text=0.5)

    def refine(batch):
        model.enable_wetr(config, record=True)
        with torch.no_grad():
            model(**batch)
        (record,) = model.wetr_record
        model.disable_wetr()
        return record

    batched = refine(_wetr_batch(processor, combos, subtitles))
    valid = _wetr_batch(processor, combos, subtitles)["attention_mask"].bool()
    assert not valid[1, 0]  # the second sample is left-padded
    for b in range(2):
        alone = refine(_wetr_batch(processor, combos[b : b + 1], subtitles[b : b + 1], first=b))
        assert torch.isfinite(batched["scores"][b]).all()
        torch.testing.assert_close(batched["scores"][b][valid[b]], alone["scores"][0], rtol=1e-4, atol=1e-5)
        assert torch.equal(batched["kept"][b][valid[b]], alone["kept"][0])
        rows = batched["kept_index"][b] >= 0
        torch.testing.assert_close(batched["gamma"][b][rows], alone["gamma"][0], rtol=1e-4, atol=1e-5)


def test_the_kept_patch_grid_places_each_kept_visual_token_on_its_patch(make_model, processor):
    """Fig. 3's data: the kept visual tokens of a sample, in raster order over its video's merged grid."""
    model = make_model(seed=0)
    batch = _wetr_batch(processor, ["a", "av", "v"], ["ok", "I went to the station this morning.", "We talked."])
    roles = batch["wetr_roles"]
    model.enable_wetr(WETRConfig(trigger_interval=2, p_visual=0.25), record=True)
    with torch.no_grad():
        model(**batch)
    (record,) = model.wetr_record
    model.disable_wetr()
    merge = model.config.vision_config.spatial_merge_size
    for sample, grid_row in ((1, 0), (2, 1)):  # sample 0 has no video: the videos are rows 0 and 1 of the grid
        kept, gamma = kept_visual_grid(record, roles, batch["video_grid_thw"][grid_row], merge, sample)
        t, h, w = batch["video_grid_thw"][grid_row].tolist()
        assert kept.shape == (t, h // merge, w // merge)
        visual = (roles[sample] == ROLE_VISUAL).nonzero().flatten().tolist()  # raster order = order in the sequence
        chosen = [visual.index(p) for p in record["kept_index"][sample].tolist() if p in visual]
        assert sorted(kept.flatten().nonzero().flatten().tolist()) == sorted(chosen)
        assert int(kept.sum()) == math.ceil(0.25 * len(visual))
        slots = {p: j for j, p in enumerate(record["kept_index"][sample].tolist())}
        for rank in chosen:
            assert gamma.flatten()[rank] == record["gamma"][sample, slots[visual[rank]]]
        assert (gamma[~kept] == 0).all()
    with pytest.raises(ValueError, match="visual tokens but its video grid"):
        kept_visual_grid(record, roles, batch["video_grid_thw"][0], merge, sample=0)  # the audio-only sample


def test_wetr_refuses_inputs_it_cannot_refine(make_model, processor, make_inputs):
    model = make_model(seed=0)
    model.enable_wetr(WETRConfig(trigger_interval=2))
    inputs = make_inputs(["video+audio"])  # no query spans
    with pytest.raises(ValueError, match="no wetr_roles"):
        model(**inputs)
    with pytest.raises(ValueError, match="no Q_pos span"):
        model(**inputs, wetr_roles=processor.token_roles(inputs["input_ids"]))
    with pytest.raises(ValueError, match="no wetr_roles"):
        model.generate(**inputs, max_new_tokens=2)
    with pytest.raises(ValueError, match="smaller than the decoder depth"):
        model.enable_wetr(WETRConfig(trigger_interval=4))  # the tiny model has 4 layers
    model.disable_wetr()


@pytest.mark.parametrize("overrides", [{}, {"ewm_belief_construction": "none"}])  # AffectVerse and the plain thinker
@pytest.mark.parametrize("combos", [["av"], ["av", "v", "a"]])  # a single sample, a left-padded mixed batch
def test_greedy_generate_with_the_refined_cache_equals_without_cache(make_model, processor, overrides, combos):
    from modeling_affectverse.tiny import build_tiny_processor

    model = make_model(seed=0, **overrides)
    proc = build_tiny_processor().follow_model_config(model.config) if overrides else processor
    batch = _wetr_batch(proc, combos, ["I went to the station this morning.", "ok", None][: len(combos)])
    model.enable_wetr(WETRConfig(trigger_interval=2, p_visual=0.25, p_audio=0.5, p_text=0.5))
    length = batch["input_ids"].shape[1]
    options = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "output_logits": True,
               "return_dict_in_generate": True}  # fmt: skip
    with torch.no_grad():
        cached = model.generate(**batch, **options)
        uncached = model.generate(**batch, **options, use_cache=False)  # the whole sequence refined at every step
        model.disable_wetr()
        plain = model.generate(**{k: v for k, v in batch.items() if k != "wetr_roles"}, **options)
    assert torch.equal(cached.sequences[:, length:], uncached.sequences[:, length:])
    for step_cached, step_uncached in zip(cached.logits, uncached.logits, strict=True):
        torch.testing.assert_close(step_cached, step_uncached, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(cached.logits[0], plain.logits[0])  # the refinement changed what the model saw


def test_closed_set_scoring_from_the_refined_cache_equals_one_refined_forward_per_candidate(make_model, demo_manifest):
    from modeling_affectverse.data.collator import AffectVerseCollator
    from modeling_affectverse.data.manifest import load_manifest
    from modeling_affectverse.scoring_affectverse import (
        candidate_log_likelihoods,
        candidate_token_ids,
        closed_set_probabilities,
    )
    from modeling_affectverse.tiny import build_tiny_processor

    model, processor = make_model(seed=0), build_tiny_processor()
    rows = [r for r in load_manifest(demo_manifest)][:2]
    labels = ["worried", "happy", "neutral", "angry", "surprise", "sad"]
    model.enable_wetr(WETRConfig(trigger_interval=2, p_visual=0.25, p_audio=0.5, p_text=0.5))
    with torch.no_grad():
        collator = AffectVerseCollator.for_prediction(processor, with_answer=True, wetr_queries=True)
        reference, _ = closed_set_probabilities(model, collator.collate_candidates(rows, labels), len(labels))
        prompts = AffectVerseCollator.for_prediction(processor, wetr_queries=True)(rows)
        shared = candidate_log_likelihoods(model, prompts, candidate_token_ids(processor.tokenizer, labels))
    model.disable_wetr()
    torch.testing.assert_close(shared, reference, rtol=1e-5, atol=1e-4)
