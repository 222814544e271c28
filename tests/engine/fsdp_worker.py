"""One rank of test_fsdp's checks, run under ``torchrun --nproc_per_node=2`` with gloo on CPU.

Builds the CI config's tiny FLUX distiller (and a tiny Qwen-Image student) on every rank, keeps an
unsharded copy, wraps the original in ``ArcFlowFSDP`` and checks:

- every transformer block is its own shard unit, and every parameter a ``DTensor`` sharded along
  dim 0 (the frozen base and the trainable tensors alike);
- ``no_sync`` defers the reduction, and the gradients FSDP then leaves on the shards are the
  mean over ranks of each rank's unsharded gradient;
- the grad norm ``ArcFlowOptimWrapper`` logs is the norm of the gathered gradients;
- a NaN in one rank's gradient shard makes every rank skip the step;
- ``shard_like`` inverts ``full_tensor`` for every parameter, uneven shards included;
- the released configs' layout (bfloat16 base, float32 trainable tensors, gradient
  checkpointing) gives the unsharded gradients;
- mixed precision (``param_dtype="bfloat16"``) trains with float32 gradients on the shards.

Any failed check raises, so the process (and torchrun) exits non-zero.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import MessageHub
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor, Shard

from arcflow.engine import ArcFlowFSDP, ArcFlowOptimWrapperConstructor
from arcflow.engine.sharding import full_tensor, shard_like
from arcflow.engine.wrappers import TRANSFORMER_BLOCKS
from arcflow.models import build_student_from_cfg
from arcflow.models.distiller import ArcFlowDistiller

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/tiny/arcflow_ci_flux.py"
sys.path.insert(0, str(ROOT / "tests"))  # run as a script: reach the tests' tiny models
from tiny_models import TinyWorld  # noqa: E402


def distiller() -> ArcFlowDistiller:
    """The CI config's distiller, without LoRA dropout and with every trainable tensor moved off
    its initialisation (LoRA B starts at 0, which would leave LoRA A without gradient)."""
    cfg = Config.fromfile(str(CONFIG)).model
    kwargs = {k: v for k, v in cfg.items() if k not in ("type", "student")}
    torch.manual_seed(0)
    student = build_student_from_cfg({**cfg.student, "lora_dropout": 0.0}, device="cpu")
    TinyWorld().randomize(student)
    return ArcFlowDistiller(student=student, **kwargs)


def flux_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return {
        "prompt_embeds": torch.randn(2, 5, 32, generator=generator),
        "pooled_prompt_embeds": torch.randn(2, 32, generator=generator),
    }


def optim_wrapper(model):
    cfg = dict(optimizer=dict(type="AdamW", lr=1e-3), clip_grad=dict(max_norm=1e9))
    return ArcFlowOptimWrapperConstructor(cfg)(model)


def check_sharding(wrapper: ArcFlowFSDP, world: int) -> None:
    blocks = [m for m in wrapper.module.modules() if isinstance(m, TRANSFORMER_BLOCKS)]
    assert blocks, "no transformer block found"
    for block in blocks:
        assert isinstance(block, FSDPModule), type(block).__name__
    assert isinstance(wrapper.module.student.transformer, FSDPModule)
    trainable = 0
    for name, param in wrapper.module.named_parameters():
        assert isinstance(param, DTensor), name
        assert param.placements == (Shard(0),), (name, param.placements)
        chunks = torch.empty(param.shape[0]).chunk(world)
        local = chunks[dist.get_rank()].numel() if dist.get_rank() < len(chunks) else 0
        assert param.to_local().shape[0] == local, (name, param.to_local().shape, local)
        trainable += param.requires_grad
    assert trainable, "no trainable parameter"


def check_gradients(world: int, rank: int) -> None:
    """FSDP gradients = mean of the ranks' unsharded gradients; logged norm = gathered norm."""
    model = distiller()
    reference = copy.deepcopy(model)
    wrapper = ArcFlowFSDP(model)
    check_sharding(wrapper, world)
    optim = optim_wrapper(wrapper)
    data = flux_batch()

    # As in the distiller's train step: the first segment's backward without reduction.
    losses = wrapper(mode="loss", data=data, iteration=0, rank=rank)
    with wrapper.no_sync():
        losses["loss_seg0"].backward()
    assert all(p.grad is None for p in wrapper.module.parameters()), "reduced inside no_sync"
    losses["loss_seg1"].backward()
    params = wrapper.module.named_parameters()
    grads = {n: full_tensor(p.grad) for n, p in params if p.requires_grad}

    expected = {n: torch.zeros_like(p) for n, p in reference.named_parameters() if p.requires_grad}
    for other in range(world):
        reference.zero_grad(set_to_none=True)
        sum(reference.rollout_losses(data, iteration=0, rank=other).values()).backward()
        for name, param in reference.named_parameters():
            if param.requires_grad:
                expected[name] += param.grad / world
    assert set(grads) == set(expected)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)

    gathered_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()]))
    MessageHub.get_current_instance().update_info("iter", 5)
    optim.step()
    logged = MessageHub.get_current_instance().get_scalar("train/grad_norm").current()
    assert math.isclose(logged, float(gathered_norm), rel_tol=1e-5), (logged, gathered_norm)
    optim.zero_grad()

    # A NaN in rank 1's shard only: the global norm is NaN everywhere and every rank skips.
    before = {n: full_tensor(p).clone() for n, p in wrapper.module.named_parameters()}
    losses = wrapper(mode="loss", data=data, iteration=1, rank=rank)
    sum(losses.values()).backward()
    if rank == 1:
        shards = [p.grad.to_local() for p in wrapper.module.parameters() if p.grad is not None]
        next(s for s in shards if s.numel()).fill_(math.nan)
    optim.step()
    assert optim.skipped_steps == 1, optim.skipped_steps
    for name, param in wrapper.module.named_parameters():
        assert torch.equal(full_tensor(param), before[name]), name

    for name, param in wrapper.module.named_parameters():
        resharded = shard_like(full_tensor(param), param)
        assert torch.equal(resharded.to_local(), param.to_local()), name


def check_released_layout(world: int) -> None:
    """A Qwen-Image student laid out as the released configs (bfloat16 base, float32 trainable
    tensors, gradient checkpointing) shards its blocks and gets the unsharded gradients."""
    tiny = TinyWorld()
    student = tiny.student(
        "qwen_image", dtype=torch.bfloat16, gradient_checkpointing=True, trainable_dtype="float32"
    )
    tiny.randomize(student)
    reference = copy.deepcopy(student)
    wrapper = ArcFlowFSDP(ArcFlowDistiller(student=student, latent_size=(4, 4)))
    check_sharding(wrapper, world)
    x, cond = tiny.latents(height=4, width=4), tiny.cond("qwen_image")
    for model in (student, reference):
        policy = model.student_policy(x, torch.full((2,), 0.7), cond)
        policy.velocity_means.float().square().mean().backward()
    # Every rank ran the same batch: the mean over ranks is the unsharded gradient, up to bfloat16
    # rounding where gradients from several blocks add up in another order (the timestep
    # embedder's: relative errors of the norm up to 0.3%).
    expected = dict(reference.trainable_named_parameters())
    for name, param in student.trainable_named_parameters():
        assert param.grad.dtype == torch.float32, name
        error = (full_tensor(param.grad) - expected[name].grad).norm()
        assert error <= 1e-2 * expected[name].grad.norm(), (name, error)


def check_mixed_precision(world: int) -> None:
    """``param_dtype="bfloat16"`` computes in bfloat16 and leaves float32 gradients on the
    float32 shards."""
    wrapper = ArcFlowFSDP(distiller(), param_dtype="bfloat16", reduce_dtype="float32")
    check_sharding(wrapper, world)
    losses = wrapper(mode="loss", data=flux_batch(), iteration=0, rank=dist.get_rank())
    sum(losses.values()).backward()
    for name, param in wrapper.module.named_parameters():
        if param.requires_grad:
            assert param.dtype == param.grad.dtype == torch.float32, name
            assert torch.isfinite(full_tensor(param.grad)).all(), name


def main() -> None:
    dist.init_process_group(backend="gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    check_gradients(world, rank)
    check_released_layout(world)
    check_mixed_precision(world)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
