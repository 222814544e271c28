"""mmengine's Runner, with a weight initialisation that FSDP-sharded models survive."""

from __future__ import annotations

from mmengine.dist import broadcast
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from torch.distributed.tensor import DTensor


class ArcFlowRunner(Runner):
    """mmengine's ``Runner`` whose weight initialisation leaves sharded parameters alone.

    After ``init_weights`` mmengine (0.10.7, ``Runner._init_model_weights``) broadcasts every
    state-dict tensor from rank 0. A parameter sharded by ``ArcFlowFSDP`` is a ``DTensor``, which
    cannot be broadcast, and must not be: each rank holds a different shard. Those are skipped;
    ``ArcFlowFSDP`` synchronised the model from rank 0 before sharding it, as DDP does.
    """

    def _init_model_weights(self) -> None:
        model = self.model.module if is_model_wrapper(self.model) else self.model
        if not hasattr(model, "init_weights"):
            return
        model.init_weights()
        for tensor in model.state_dict().values():
            if not isinstance(tensor, DTensor):
                broadcast(tensor)
