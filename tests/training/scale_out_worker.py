"""One process of a multi-process training run for the scale-out tests (`accelerate launch` starts two).

    accelerate launch --config_file <cpu copy of configuration/accelerate/X.yaml> tests/training/scale_out_worker.py \\
        <engine> <sft.py arguments...>

It runs `training/sft.py`'s own `main` on the arguments and records, in `<output_dir>/scale_out/` (rank 0):

- `steps.json`: after each optimizer step, whether both processes hold the same whole trainable parameters (gathered
  from the shards under ZeRO-3 / FSDP2; checksums compared across processes) and the global step;
- `trained.safetensors`: the whole trainable parameters at the end;
- `outputs.pt`: logits and belief tokens of the trained model, in this process, on a fixed batch (the first two
  training rows, whole clips): what the saved adapter must reproduce on a fresh base.

`engine` is `ddp`, `zero2`, `zero3` or `fsdp2`. For `fsdp2`, accelerate does not enable FSDP on a machine without
CUDA (it runs DDP without a word), so this worker sets accelerate's state to FSDP with the plugin accelerate builds
from the `FSDP_*` variables its launcher set from the config: the same plugin, wrap policy and PEFT-then-shard order
as on a GPU cluster (tests/training/scale_out.py, `CPU_CHANGES`).
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import TrainerCallback


class RecordSteps(TrainerCallback):
    """After each optimizer step: are the whole trainable parameters the same on every process?"""

    def __init__(self, trainer, record: list):
        self.trainer, self.record = trainer, record

    def on_step_end(self, args, state, control, **kwargs):
        from training.distributed import trainable_identical

        self.record.append({"step": state.global_step, "identical": trainable_identical(self.trainer)})


def force_fsdp(trainer) -> None:
    """accelerate's FSDP2 on a machine without CUDA: its own plugin (from the launcher's `FSDP_*` variables), set on
    its state before the Trainer prepares the model, and the trainer's own sharding preparation (which its
    `__init__` skipped, FSDP being off then)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    from training.distributed import prepare_for_sharding

    state = trainer.accelerator.state
    state.fsdp_plugin = FullyShardedDataParallelPlugin()
    state.distributed_type = DistributedType.FSDP
    trainer.is_fsdp_enabled = True
    prepare_for_sharding(trainer.model, trainer.accelerator)


def fixed_batch(processor, manifest: str) -> dict:
    """The first two training rows of `manifest`, whole clips, every modality, as the prediction collator batches
    them."""
    from modeling_affectverse.data.collator import AffectVerseCollator
    from modeling_affectverse.data.manifest import load_manifest

    rows = load_manifest(manifest).filter(lambda row: row["split"] == "train")
    return AffectVerseCollator.for_prediction(processor)([rows[0], rows[1]])


def in_process_outputs(trainer, manifest: str) -> dict[str, torch.Tensor]:
    """Logits and belief tokens of the trained model on `fixed_batch`, run on every process (sharded weights are
    gathered by the forward itself)."""
    from training.distributed import keep_ewm_gathered

    model = trainer.model_wrapped
    engine = getattr(trainer.accelerator, "deepspeed_engine_wrapped", None)
    if engine is not None and engine.engine.zero_optimization_stage() == 3:
        keep_ewm_gathered(engine.engine)
    device = trainer.accelerator.device
    batch = fixed_batch(trainer.processing_class, manifest)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    return {"logits": out.logits.detach().cpu(), "belief_tokens": out.belief_tokens.detach().cpu()}


def run(engine: str, argv: list[str]) -> None:
    from accelerate.state import PartialState

    PartialState(cpu=True, backend="gloo")  # gloo before the Trainer builds its state
    from training.sft import build_parser, finish, main

    script_args, training_args, model_args = build_parser().parse_args_and_config(argv)
    record: list = []

    def before_training(trainer):
        if engine == "fsdp2":
            force_fsdp(trainer)
        trainer.add_callback(RecordSteps(trainer, record))

    trainer = main(script_args, training_args, model_args, before_training=before_training)
    outputs = in_process_outputs(trainer, script_args.train_manifest)
    from training.distributed import gathered_trainable

    trained = gathered_trainable(trainer)
    if trainer.accelerator.is_main_process:
        folder = os.path.join(training_args.output_dir, "scale_out")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "steps.json"), "w", encoding="utf-8") as handle:
            json.dump({"engine": engine, "steps": record, "processes": trainer.accelerator.num_processes}, handle)
        save_file({k: v.contiguous() for k, v in trained.items()}, os.path.join(folder, "trained.safetensors"))
        torch.save(outputs, os.path.join(folder, "outputs.pt"))
    finish(trainer)  # as training/sft.py's command line ends


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
