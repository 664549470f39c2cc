"""What AffectVerse needs to train correctly under DeepSpeed ZeRO and FSDP2 (docs/architecture.md §7, "Scale-out").

- `OrderedDeepSpeedBackward`: ZeRO reduces gradients in parameter order, whatever the batch's graph was.
- `prepare_for_sharding`: every process calls every module on every micro-batch (ZeRO-3 and FSDP gather weights per
  module call); under ZeRO-3 the EWM is one leaf module and the token adapter owns the weights it reads.
- `keep_ewm_gathered`: ZeRO-3 keeps the EWM's (small) weights gathered.
- `adapter_state_dict`, `gathered_trainable`, `trainable_identical`: whole weights out of the shards.
- `token_rows_on_this_device`: PEFT's ZeRO-3 gather of the `<|belief|>` embedding row on a machine without CUDA.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from peft.utils.integrations import gather_params_ctx


class OrderedDeepSpeedBackward:
    """Replaces accelerate's `DeepSpeedEngineWrapper.backward` so that ZeRO reduces the gradients in parameter order.

    ZeRO-1/2/3 reduce gradients in buckets filled in the order backward produces them, and assume every process
    produces the same gradients in the same order. AffectVerse's graph depends on the batch (a micro-batch without
    video runs no vision tower; the EWM's regimes; the imagination only on clips with a future), so two processes
    fill their buckets differently: gloo or NCCL fail on the size mismatch, or, with equal sizes, gradients of
    different parameters are summed without a word. DeepSpeed's `coalesce_grad_reduction` keeps each process's
    gradients local over the accumulation window and reduces them once, in parameter order; a trainable parameter
    this process left without a gradient gets a zero one first, so every process reduces the same tensors.
    """

    def __init__(self, wrapped, parameters: list[torch.nn.Parameter]):
        self.wrapped = wrapped
        self.engine = wrapped.engine
        self.parameters = parameters
        self.window = None  # the open `coalesce_grad_reduction` block of this accumulation window

    def backward(self, loss: torch.Tensor, sync_gradients: bool = True, **kwargs) -> None:
        """As accelerate's: backward on every micro-batch, the reduction and the optimizer step at the boundary."""
        if self.window is None:
            self.window = self.engine.coalesce_grad_reduction()
            self.window.__enter__()
        self.engine.backward(loss, **kwargs)
        if not sync_gradients:
            return
        for param in self.parameters:
            if param.grad is None:  # ZeRO-3: the full shape (`ds_shape`), not the local partition's
                shape = getattr(param, "ds_shape", param.shape)
                param.grad = torch.zeros(shape, dtype=param.dtype, device=param.device)
        window, self.window = self.window, None
        window.__exit__(None, None, None)  # the window's one reduction, in parameter order
        self.engine.step()

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)


def prepare_for_sharding(model: torch.nn.Module, accelerator) -> None:
    """Before the engine wraps the model: every process runs every module (`run_every_module`). Under ZeRO-3 the
    token adapter's parameters are registered with it, and the EWM is one leaf module: DeepSpeed hooks it as a whole,
    not its submodules, so the order of the modules it records on the first step (and prefetches by) is the same on
    every process whatever branches a batch takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "prefusion", None) is not None:
        raise ValueError(
            "ewm_prefusion runs only on batches with media tokens, which sharded training (DeepSpeed, FSDP) cannot "
            "allow: train it with DDP (configuration/accelerate/multi_gpu.yaml)"
        )
    base.run_every_module(True)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        return
    from deepspeed.runtime.zero.partition_parameters import register_external_parameter

    # PEFT's token adapter (the <|belief|> row) reads its base embedding's weight and its own rows (a ParameterDict,
    # itself a module it never calls) inside its forward. DeepSpeed registers such a parameter with the module only
    # when it finds it not gathered at its use: after a resume its small rows are already gathered on the first step
    # (restored persistent), so the parameter trace recorded there lacks them and the next step stops with
    # DeepSpeed's "tracing error". Registered here, before the first step, they belong to the module on every step.
    for module in model.modules():
        if isinstance(module, TrainableTokensLayer):
            for param in [module.base_layer.weight, *module.trainable_tokens_delta.parameters()]:
                register_external_parameter(module, param)
    if base.ewm is not None:
        from deepspeed.utils import set_z3_leaf_modules

        from modeling_affectverse.ewm import EmotionWorldModule

        set_z3_leaf_modules(model, [EmotionWorldModule])


def keep_ewm_gathered(engine) -> int:
    """ZeRO-3: the EWM's weights become persistent (gathered once on every process, never released, re-gathered
    after each optimizer step as DeepSpeed does for its own small parameters); their gradients and optimizer states
    stay partitioned. Call it on every process at the same point (the first training step). Returns the number of
    parameters it covers.

    Why: the leaf EWM gives a weight no gradient of this micro-batch a zero one from its backward hook, which
    fires once the gradients of the module's inputs exist, possibly before those of weights whose path does not pass
    through an input (the rollout's queries, the step embeddings): their gradients then add to that zero tensor,
    which must have the weight's full shape, not a partition's."""
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    from modeling_affectverse.ewm import EmotionWorldModule

    params = [
        p
        for module in engine.module.modules()
        if isinstance(module, EmotionWorldModule) and any(q.requires_grad for q in module.parameters())
        for p in module.parameters()
        if hasattr(p, "ds_id")
    ]
    persistent = engine.optimizer.persistent_parameters
    known = {id(p) for p in persistent}
    for param in params:
        param.ds_persist = True
        if id(param) not in known:
            persistent.append(param)
    # DeepSpeed gathers even its own persistent parameters lazily, at their first use: gather them all now
    missing = [p for p in params if p.ds_status == ZeroParamStatus.NOT_AVAILABLE]
    if missing:
        missing[0].all_gather(param_list=missing)
    return len(params)


def adapter_state_dict(model) -> dict[str, torch.Tensor]:
    """FSDP2: the entries of the PEFT model's state dict that its adapter saves (PEFT decides which:
    `get_peft_model_state_dict`), each whole (`DTensor.full_tensor`) on the CPU; the rest of the model is never
    gathered. A collective over the state dict's fixed order: every process must call it."""
    from peft.utils.save_and_load import get_peft_model_state_dict

    local = model.state_dict()  # DTensors: views of this process's shards, nothing gathered
    wanted = {id(value) for value in get_peft_model_state_dict(model, state_dict=local).values()}
    return {
        name: (value.full_tensor() if hasattr(value, "full_tensor") else value).detach().cpu()
        for name, value in local.items()
        if id(value) in wanted
    }


def gathered_trainable(trainer) -> dict[str, torch.Tensor]:
    """Every trainable parameter of the trainer's model, whole (gathered from the shards under ZeRO-3 and FSDP2),
    detached on the CPU, by name. A collective: every process must call it."""
    model = trainer.model_wrapped if trainer.model_wrapped is not None else trainer.model
    engine = getattr(trainer.accelerator, "deepspeed_engine_wrapped", None)
    module = engine.engine.module if engine is not None else trainer.accelerator.unwrap_model(model)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if engine is not None and engine.engine.zero_optimization_stage() == 3:
        from deepspeed.runtime.zero.partition_parameters import GatheredParameters

        with GatheredParameters([p for _, p in named]):
            return {n: p.detach().cpu().clone() for n, p in named}
    out = {}
    for name, param in named:
        value = param.full_tensor() if hasattr(param, "full_tensor") else param  # FSDP2: a DTensor
        out[name] = value.detach().cpu().clone()
    return out


def trainable_identical(trainer) -> bool:
    """Whether every process holds the same whole trainable weights (float64 sum and sum of squares of
    `gathered_trainable`, compared across processes). A collective: every process must call it."""
    accelerator = trainer.accelerator
    whole = torch.cat([p.double().flatten() for p in gathered_trainable(trainer).values()])
    sums = accelerator.gather(torch.stack([whole.sum(), whole.pow(2).sum()]).unsqueeze(0).to(accelerator.device))
    return bool((sums == sums[0]).all())


def _collect_token_weights_here(self, weight: torch.Tensor, rows: torch.Tensor, embed_dim: int) -> torch.Tensor:
    """PEFT's `TrainableTokensLayer._collect_token_weights` (ZeRO-3: rank 0 reads the rows of the gathered
    embedding and broadcasts them), with the receiving buffer on the weight's own device instead of PEFT's
    hard-coded `cuda` device, which does not exist on a CPU-only process."""
    with gather_params_ctx([weight], modifier_rank=None):
        if dist.is_available() and dist.is_initialized() and dist.get_rank() == 0:
            token_weights = weight[rows].clone()
        else:
            token_weights = torch.empty((len(rows), embed_dim), dtype=weight.dtype, device=weight.device)
    dist.broadcast(token_weights, src=0)
    return token_weights


@contextlib.contextmanager
def token_rows_on_this_device():
    """While open, and only on a machine without CUDA, PEFT's ZeRO-3 token-row gather uses
    `_collect_token_weights_here`. With CUDA, PEFT's own path runs (the one every GPU user takes)."""
    if torch.cuda.is_available():
        yield
        return
    original = TrainableTokensLayer._collect_token_weights
    TrainableTokensLayer._collect_token_weights = _collect_token_weights_here
    try:
        yield
    finally:
        TrainableTokensLayer._collect_token_weights = original


__all__ = [
    "OrderedDeepSpeedBackward",
    "adapter_state_dict",
    "gathered_trainable",
    "keep_ewm_gathered",
    "prepare_for_sharding",
    "token_rows_on_this_device",
    "trainable_identical",
]
