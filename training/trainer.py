"""`AffectVerseSFTTrainer`: TRL's SFTTrainer with the model's own forward and the imagination loss
(docs/architecture.md §4.10).

TRL's `compute_loss` runs the backbone through a fused LM head and never calls a subclass `forward`
(docs/architecture.md §7), which would skip the Emotion World Module. This trainer calls `model(**inputs)` and optimises

    loss = LM cross-entropy + imagination_loss_weight * imagination_loss

Both terms are normalised over the whole optimizer step, not per micro-batch: the LM term by the answer tokens of
the gradient-accumulation window (the Trainer's `num_items_in_batch`), the imagination term by the (sample,
modality) pairs it supervises in that window (`count_imagination_targets`, known before the forward because the
collator draws the keep ratios and builds the future inputs). So 2 micro-batches of 1 give the gradients of 1 batch
of 2, and N processes give the gradients of one process with N times the batch. LM loss, imagination loss and the
per-step imagination cosine are logged as separate metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from modeling_affectverse.modeling_affectverse import count_imagination_targets
from training.distributed import (
    OrderedDeepSpeedBackward,
    adapter_state_dict,
    keep_ewm_gathered,
    prepare_for_sharding,
    token_rows_on_this_device,
)


@dataclass
class AffectVerseSFTConfig(SFTConfig):
    """SFTConfig plus the AffectVerse training terms (docs/architecture.md §4.3, §4.9, §4.10; paper Table 7)."""

    imagination_loss_weight: float = field(
        default=1.0, metadata={"help": "lambda: weight of the imagination loss added to the LM loss."}
    )
    emotion_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the emotion loss of ewm_factorization=emotion_first (LEWM)."},
    )
    keep_ratio_min: float = field(default=0.3, metadata={"help": "Lower end of the per-sample keep ratio rho ~ U."})
    keep_ratio_max: float = field(default=1.0, metadata={"help": "Upper end of the per-sample keep ratio rho ~ U."})
    modality_dropout: float = field(
        default=0.15,
        metadata={"help": "Probability of dropping video or audio (half each) of a sample that has both."},
    )
    whole_clip_probability: float = field(
        default=0.0,
        metadata={
            "help": "Probability that a training sample is seen whole (rho = 1) instead of cut at its drawn rho."
        },
    )
    strict_data: bool = field(
        default=False,
        metadata={"help": "Raise on a bad manifest row (missing media, empty answer) instead of skipping it."},
    )
    decode_fps: float = field(default=3.0, metadata={"help": "Frame rate the clips are decoded at."})
    max_frames: int = field(default=64, metadata={"help": "Memory guard: longer clips are decoded at a lower rate."})
    eval_keep_ratio: float | None = field(
        default=None,
        metadata={
            "help": "Evaluation during training sees whole clips with every modality (rho = 1, no dropout). Set a "
            "rho to evaluate with that fixed split instead: the future is dropped and the imagination loss reported."
        },
    )
    cache_media: bool = field(
        default=False,
        metadata={"help": "Keep decoded clips in memory (small datasets trained for many epochs, like the demo)."},
    )
    # the collator builds model inputs from manifest rows: TRL must not tokenize or drop columns
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the manifest columns."})
    dataset_kwargs: dict | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "TRL dataset preparation is skipped: the collator runs the processor."},
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.keep_ratio_min <= self.keep_ratio_max <= 1:
            raise ValueError(
                f"keep_ratio_min/keep_ratio_max must satisfy 0 < min <= max <= 1, got "
                f"{self.keep_ratio_min}/{self.keep_ratio_max}"
            )
        if not 0 <= self.modality_dropout <= 1:
            raise ValueError(f"modality_dropout must lie in [0, 1], got {self.modality_dropout}")
        if not 0 <= self.whole_clip_probability <= 1:
            raise ValueError(f"whole_clip_probability must lie in [0, 1], got {self.whole_clip_probability}")
        if self.imagination_loss_weight < 0:
            raise ValueError(f"imagination_loss_weight must be >= 0, got {self.imagination_loss_weight}")
        if self.eval_keep_ratio is not None and not 0 < self.eval_keep_ratio <= 1:
            raise ValueError(f"eval_keep_ratio must lie in (0, 1], got {self.eval_keep_ratio}")


class EpochToCollator(TrainerCallback):
    """Tells the collator the epoch, which seeds its per-sample draws (so each epoch draws anew, reproducibly)."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch or 0)


class AffectVerseSFTTrainer(SFTTrainer):
    """SFTTrainer that runs AffectVerse's forward and adds `imagination_loss_weight * imagination_loss`.

    `eval_data_collator` (optional) batches the evaluation set: evaluation is not training, so it must not draw keep
    ratios or drop modalities like the training collator does.
    """

    # compute_loss normalises both terms over the accumulation window itself
    loss_is_scaled_for_ga = True

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        self.eval_data_collator = eval_data_collator
        with token_rows_on_this_device():  # PEFT's ZeRO-3 gather of the belief row, on CPU too
            super().__init__(*args, **kwargs)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            prepare_for_sharding(self.model, self.accelerator)
        if hasattr(self.data_collator, "epoch"):
            self.add_callback(EpochToCollator(self.data_collator))
        self._imagination_targets = None
        self._ewm_gathered = False

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """The Trainer's save, except under FSDP with sharded state dicts (the shipped `fsdp.yaml`), where the
        Trainer writes no adapter at all: the adapter is then saved from the gathered (full) state dict. Checkpoints
        stay sharded (resumable on any number of processes of the same shape)."""
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if not self.is_fsdp_enabled or plugin is None or "FULL_STATE_DICT" in str(plugin.state_dict_type):
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        state_dict = adapter_state_dict(self.accelerator.unwrap_model(self.model))  # a collective: every process
        if self.args.should_save:
            self._save(output_dir, state_dict=state_dict)

    def get_eval_dataloader(self, eval_dataset=None):
        """The Trainer's eval dataloader, built with `eval_data_collator` when one was given."""
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def _config(self):
        model = self.accelerator.unwrap_model(self.model)
        return (model.get_base_model() if hasattr(model, "get_base_model") else model).config

    def _targets(self, batch: dict) -> int:
        return count_imagination_targets(batch, self._config())

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """As the Trainer's, plus the imagination targets of the whole window (summed over processes)."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        targets = torch.tensor(sum(self._targets(b) for b in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            targets = self.accelerator.gather(targets).sum()
        self._imagination_targets = targets
        return batch_samples, num_items_in_batch

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step. Under DeepSpeed ZeRO gradients are reduced in parameter order
        (`OrderedDeepSpeedBackward`); under ZeRO-3 the EWM's weights stay gathered (`keep_ewm_gathered`)."""
        wrapped = getattr(self.accelerator, "deepspeed_engine_wrapped", None)
        stage = wrapped.engine.zero_optimization_stage() if wrapped is not None else None
        if stage in (1, 2, 3) and not isinstance(wrapped, OrderedDeepSpeedBackward):
            trainable = [p for p in wrapped.engine.module.parameters() if p.requires_grad]
            self.accelerator.deepspeed_engine_wrapped = OrderedDeepSpeedBackward(wrapped, trainable)
        if stage == 3 and not self._ewm_gathered:
            keep_ewm_gathered(wrapped.engine)
            self._ewm_gathered = True
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs = {**inputs, "use_cache": False}
        outputs = model(**inputs)  # the model's own forward: EWM, belief injection, truncation
        lm_loss, imagination = outputs.loss, outputs.imagination_loss
        weight = self.args.imagination_loss_weight
        window = mode == "train" and num_items_in_batch is not None and self._imagination_targets is not None
        if window:
            labelled = (inputs["labels"][..., 1:] != -100).sum()
            # a micro-batch of unlabeled rows has no answer token: its LM term is 0 (the mean over none is NaN)
            lm_loss = torch.where(labelled > 0, lm_loss, torch.zeros_like(lm_loss))
            answers = torch.as_tensor(num_items_in_batch, device=labelled.device).clamp(min=1)  # 0: all unlabeled
            loss = lm_loss * labelled / answers
            if imagination is not None and weight > 0:
                share = self._targets(inputs) / self._imagination_targets.clamp(min=1)
                loss = loss + weight * imagination * share
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients; the shares sum over ranks
        else:
            loss = lm_loss if imagination is None or weight == 0 else lm_loss + weight * imagination
        emotion = getattr(outputs, "emotion_loss", None)
        if emotion is not None and self.args.emotion_loss_weight > 0:  # a micro-batch mean (docs/design-notes.md)
            loss = loss + self.args.emotion_loss_weight * emotion
        self._log_terms(mode, lm_loss, imagination, outputs)
        return (loss, outputs) if return_outputs else loss

    def _log_terms(self, mode, lm_loss, imagination, outputs) -> None:
        """Per-micro-batch means, averaged by `log` over the logging interval (console and TensorBoard).

        Besides the losses and the per-step cosine: the skill scores (imagination loss / the loss of copying the last
        observed token, and / the loss of predicting the batch's mean target; below 1 means better than that
        baseline) and the targets' cross-sample cosine (near 1 means collapsed targets), docs/architecture.md §4.5.

        One gather of a fixed-size vector per step: a process whose micro-batch has no imagination target (text-only,
        or rho = 1) still takes part, so no process waits on another.
        """
        steps = self._config().ewm_rollout_steps
        extra = 6  # copy-last, batch-mean baseline losses; target similarity and whether it exists; emotion loss, too
        stats = torch.zeros(3 + steps + extra, device=lm_loss.device)
        emotion = getattr(outputs, "emotion_loss", None)
        if emotion is not None:  # emotion-first: logged with the rest, no read of its own
            stats[7 + steps], stats[8 + steps] = emotion.detach(), 1.0
        stats[0] = lm_loss.detach()
        if imagination is not None and outputs.imagination_cosine is not None:  # scored pairs (not sharding's 0)
            stats[1], stats[2] = imagination.detach(), 1.0
            stats[3 : 3 + steps] = outputs.imagination_cosine.detach()
            stats[3 + steps : 5 + steps] = outputs.imagination_baselines.detach()
            if outputs.imagination_target_similarity is not None:
                stats[5 + steps], stats[6 + steps] = outputs.imagination_target_similarity.detach(), 1.0
        # (processes, 3 + K + 4), read on the host once: the checks below then cost no further device syncs
        stats = self.accelerator.gather_for_metrics(stats.unsqueeze(0)).cpu()
        metrics = self._metrics[mode]
        metrics["lm_loss"].append(stats[:, 0].mean().item())
        with_targets = stats[stats[:, 2] > 0]
        if len(with_targets):
            loss = with_targets[:, 1].mean()
            metrics["imagination_loss"].append(loss.item())
            for step in range(steps):
                metrics[f"imagination_cosine_step{step + 1}"].append(with_targets[:, 3 + step].mean().item())
            for offset, name in enumerate(("copy_last", "batch_mean")):
                baseline = with_targets[:, 3 + steps + offset].mean()
                if baseline > 0:  # a batch-mean of one pair is that pair's target: no skill to measure
                    metrics[f"imagination_skill_{name}"].append((loss / baseline).item())
            with_similarity = with_targets[with_targets[:, 6 + steps] > 0]
            if len(with_similarity):
                metrics["imagination_target_similarity"].append(with_similarity[:, 5 + steps].mean().item())
        with_emotion = stats[stats[:, 8 + steps] > 0]
        if len(with_emotion):
            metrics["emotion_loss"].append(with_emotion[:, 7 + steps].mean().item())


__all__ = ["AffectVerseSFTConfig", "AffectVerseSFTTrainer", "EpochToCollator"]
