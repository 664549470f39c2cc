"""Launching the shipped accelerate configs on this CPU machine: what CPU requires them to change, in one place.

Each scale-out test reads `configuration/accelerate/<name>.yaml` and changes only the keys below (listed in
docs/architecture.md §7 too). Everything else (ZeRO stage, ZeRO-3's 16-bit save and init flag, FSDP2's version,
wrap policy, resharding, state-dict type) is the shipped value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "training", "scale_out_worker.py")

# key: (value here, why)
CPU_CHANGES = {
    "num_processes": (2, "two processes: this machine has 2 cores (the configs say 8 GPUs)"),
    "mixed_precision": ("no", "float32: the runs are compared with each other at 1e-5, which bf16 cannot hold"),
    "use_cpu": (True, "no GPU"),
    "gpu_ids": (None, "no GPU to list (multi_gpu.yaml names `all`): removed"),
}
# environment for every launch, with the reason
CPU_ENVIRONMENT = {
    "DS_ACCELERATOR": ("cpu", "DeepSpeed's CPU accelerator: its collectives run over gloo, no oneCCL needed"),
    "OMP_NUM_THREADS": ("1", "one thread per process on 2 cores"),
}
# what the worker does that no config key can say (tests/training/scale_out_worker.py)
CPU_WORKAROUNDS = {
    "fsdp": "accelerate enables FSDP only on GPU-like devices and silently runs DDP on CPU: the worker sets "
    "accelerate's state to FSDP with the plugin accelerate builds from the config (force_fsdp)",
}


def cpu_config(name: str, folder: str) -> str:
    """`configuration/accelerate/<name>.yaml` with `CPU_CHANGES` applied, written into `folder`; its path."""
    with open(os.path.join(ROOT, "configuration", "accelerate", f"{name}.yaml"), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    for key, (value, _) in CPU_CHANGES.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = os.path.join(folder, f"{name}-cpu.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    return path


def launch(name: str, engine: str, arguments: list[str], folder: str, timeout: int = 600):
    """`accelerate launch` the worker (training/sft.py's main) with the CPU copy of config `name`."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", cpu_config(name, folder),
               WORKER, engine, *arguments]  # fmt: skip
    env = {**os.environ, **{key: value for key, (value, _) in CPU_ENVIRONMENT.items()}}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def write_start_point(folder: str) -> tuple[str, str]:
    """A saved tiny base and a fresh demo-recipe adapter (LoRA B = 0, the EWM as built), `(base, adapter)`.

    Every engine starts from these files, so every run begins from the same weights: built in code under ZeRO-3,
    the tiny random base would draw other values than elsewhere (transformers initialises partitioned weights in
    another order), which says nothing about training; loaded from files, it is the same everywhere."""
    from peft import get_peft_model

    from modeling_affectverse.loading import EWM_CONFIG_FILE, load
    from training.adapters import affectverse_lora_config

    with open(os.path.join(ROOT, "configuration", "recipes", "demo.yaml"), encoding="utf-8") as handle:
        recipe = yaml.safe_load(handle)
    base, adapter = os.path.join(folder, "base"), os.path.join(folder, "adapter")
    model, processor = load("tiny", None, 0, None)
    model.save_pretrained(base)
    processor.save_pretrained(base)
    config = affectverse_lora_config(
        processor.belief_token_id,
        r=recipe["lora_r"],
        lora_alpha=recipe["lora_alpha"],
        lora_dropout=0.0,
        target_modules=recipe["lora_target_modules"],
        modules_to_save=recipe["lora_modules_to_save"],
    )
    torch.manual_seed(0)
    get_peft_model(model, config).save_pretrained(adapter)
    with open(os.path.join(adapter, EWM_CONFIG_FILE), "w", encoding="utf-8") as handle:
        json.dump({}, handle)
    return base, adapter
