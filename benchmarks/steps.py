"""The model calls every section times: the training objective, an optimizer step, a prefill, a generation, and the
EWM alone on the arguments a forward hands it. One definition each."""

from __future__ import annotations

import time

import torch
from peft import LoraConfig

from benchmarks.syncs import count_ops, count_sync_ops
from benchmarks.timing import median_seconds, no_sync
from modeling_affectverse.batch_layout import BatchLayout
from training.adapters import LLM_ATTENTION

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LLM_ATTENTION)  # the paper's LoRA, every section


def lora(modules_to_save: list[str] | None = None) -> LoraConfig:
    """The paper's LoRA, with the EWM saved when asked for."""
    return LoraConfig(**LORA, modules_to_save=modules_to_save)


def total_loss(out) -> torch.Tensor:
    """The training objective of a forward's output: LM loss + imagination loss when there is one (lambda = 1)."""
    return out.loss if getattr(out, "imagination_loss", None) is None else out.loss + out.imagination_loss


def optimizer_step(model, optimizer, batch: dict, extra: dict | None = None, sync=no_sync) -> None:
    """Forward (LM + imagination loss when there is one), backward, AdamW step."""
    total_loss(model(**batch, **(extra or {}))).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync()


def adamw(model) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (lr 1e-5)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


@torch.no_grad()
def prefill(model, batch: dict, sync=no_sync) -> None:
    """One prompt pass with the KV cache on."""
    model(**batch, use_cache=True)
    sync()


@torch.no_grad()
def generate_seconds(model, batch: dict, new_tokens: int, sync=no_sync) -> float:
    """Seconds of a greedy `generate` of exactly `new_tokens` tokens."""
    sync()
    start = time.perf_counter()
    model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    sync()
    return time.perf_counter() - start


def decode_seconds_per_token(model, batch: dict, new_tokens: int, sync=no_sync) -> float:
    """Decode seconds per token: (N + 1 new tokens) - (1 new token), measured back to back, over N."""
    longer = generate_seconds(model, batch, new_tokens + 1, sync)
    return (longer - generate_seconds(model, batch, 1, sync)) / new_tokens


def capture_ewm_call(model, batch: dict, **extra) -> tuple[tuple, dict]:
    """The arguments the model passes to its EWM in one forward of `batch` (captured by a pre-hook)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    captured = {}

    def hook(_, args, kwargs):
        captured["args"], captured["kwargs"] = args, kwargs

    handle = base.ewm.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        model(**batch, **extra)
    handle.remove()
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in captured["args"])
    return args, captured["kwargs"]


def ewm_alone(ewm, args, kwargs, device: str, repeats: int) -> dict:
    """Median forward and forward + backward seconds of the EWM on captured arguments, its top-level aten op count
    (a proxy for kernel launches) and its sync-inducing ops."""

    def forward():
        with torch.no_grad():
            ewm(*args, **kwargs)

    def forward_backward():
        out = ewm(*args, **kwargs)
        loss = out.belief_tokens.float().sum()
        if out.imagination_loss is not None:
            loss = loss + out.imagination_loss
        loss.backward()

    sync = torch.cuda.synchronize if device == "cuda" else no_sync
    ops, _ = count_ops(forward)
    syncs, _ = count_sync_ops(forward)
    return {
        "forward_seconds": median_seconds(forward, repeats, sync),
        "forward_backward_seconds": median_seconds(forward_backward, repeats, sync),
        "forward_aten_ops": ops,
        "forward_sync_ops": syncs,
    }


def step_syncs(model, batch: dict, **extra) -> dict:
    """Sync-inducing ops in one forward + backward of `batch` (LM loss + imagination loss when there is one)."""

    def step():
        total_loss(model(**batch, **extra)).backward()

    counts, _ = count_sync_ops(step)
    model.zero_grad(set_to_none=True)
    return counts


def with_layout(batch: dict, config, keep_ratio=None) -> dict:
    """`batch` plus the host-side `BatchLayout` the collator adds (computed from CPU copies: no device read)."""
    ids, mask = batch["input_ids"].cpu(), batch["attention_mask"].cpu()
    rho = None if keep_ratio is None else torch.as_tensor(keep_ratio).cpu()
    grid = batch.get("video_grid_thw")
    layout = BatchLayout.read(
        ids,
        mask,
        BatchLayout.token_ids(config),
        rho,
        None if grid is None else grid.cpu(),
        config.vision_config.spatial_merge_size,
    )
    return {**batch, "batch_layout": layout}
