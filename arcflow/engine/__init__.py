"""mmengine glue: optimiser, hooks (EMA, checkpoints, validation samples, throughput), wrappers,
the runner."""

from arcflow.engine.checkpoint import ArcFlowCheckpointHook, latest_checkpoint, list_checkpoints
from arcflow.engine.ema import ArcFlowEMAHook, ema_beta
from arcflow.engine.monitor import ThroughputHook
from arcflow.engine.optim import ArcFlowOptimWrapper, ArcFlowOptimWrapperConstructor
from arcflow.engine.runner import ArcFlowRunner
from arcflow.engine.validation import ValidationSamplesHook
from arcflow.engine.vis_backends import ArcFlowWandbVisBackend
from arcflow.engine.wrappers import ArcFlowDDP, ArcFlowFSDP

__all__ = [
    "ArcFlowCheckpointHook",
    "ArcFlowDDP",
    "ArcFlowEMAHook",
    "ArcFlowFSDP",
    "ArcFlowOptimWrapper",
    "ArcFlowOptimWrapperConstructor",
    "ArcFlowRunner",
    "ArcFlowWandbVisBackend",
    "ThroughputHook",
    "ValidationSamplesHook",
    "ema_beta",
    "latest_checkpoint",
    "list_checkpoints",
]
