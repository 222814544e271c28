"""Flow-matching time convention and the ArcFlow policy. Pure torch: imports nothing else of the
project, so every other package may build on it."""

from arcflow.flow.policy import ArcFlowPolicy, phi
from arcflow.flow.time import step_boundaries, unwarp_sigma, warp_sigma

__all__ = ["ArcFlowPolicy", "phi", "step_boundaries", "unwarp_sigma", "warp_sigma"]
