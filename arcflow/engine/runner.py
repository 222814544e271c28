"""mmengine's Runner, with a weight initialisation that FSDP-sharded models survive and the
project's attention-backend setting and W&B switch."""

from __future__ import annotations

import torch
from mmengine.config import Config
from mmengine.dist import broadcast
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from torch.distributed.tensor import DTensor

from arcflow.engine.vis_backends import add_wandb_backend


def use_cudnn_attention(enabled: bool) -> None:
    """Allow or forbid cuDNN's fused kernel as a backend of ``scaled_dot_product_attention``.

    Forbidden by default in training (``env_cfg.cudnn_attention=False``): with torch 2.11 and
    CUDA 13.0 on an H200, its backward pass fails on FLUX.1-dev's joint attention at 512 x 512 and
    1024 x 1024 ("mha_graph.execute(...).is_good()", then an illegal memory access; also reported
    upstream, pytorch/pytorch#190321), where flash attention trains it (docs/benchmarks.md).
    Inference keeps torch's default: the forward pass was not affected.
    """
    torch.backends.cuda.enable_cudnn_sdp(enabled)


class ArcFlowRunner(Runner):
    """mmengine's ``Runner`` whose weight initialisation leaves sharded parameters alone.

    After ``init_weights`` mmengine (0.10.7, ``Runner._init_model_weights``) broadcasts every
    state-dict tensor from rank 0. A parameter sharded by ``ArcFlowFSDP`` is a ``DTensor``, which
    cannot be broadcast, and must not be: each rank holds a different shard. Those are skipped;
    ``ArcFlowFSDP`` synchronised the model from rank 0 before sharding it, as DDP does.

    ``env_cfg.cudnn_attention`` (default False) is applied before anything runs:
    :func:`use_cudnn_attention`. A ``wandb`` key adds W&B logging: :func:`add_wandb_backend`.
    """

    @classmethod
    def from_cfg(cls, cfg: Config) -> ArcFlowRunner:
        return super().from_cfg(add_wandb_backend(cfg))

    def setup_env(self, env_cfg: dict) -> None:
        use_cudnn_attention(bool(env_cfg.get("cudnn_attention", False)))
        super().setup_env(env_cfg)

    def _init_model_weights(self) -> None:
        model = self.model.module if is_model_wrapper(self.model) else self.model
        if not hasattr(model, "init_weights"):
            return
        model.init_weights()
        for tensor in model.state_dict().values():
            if not isinstance(tensor, DTensor):
                broadcast(tensor)
