"""Flow-matching time convention, the ArcFlow policy and the one sampling loop
(:mod:`arcflow.flow.sampling`). Pure torch: imports nothing else of the project but the released
constants (:mod:`arcflow.released`), so every other package may build on it."""

from arcflow.flow.policy import ArcFlowPolicy, phi
from arcflow.flow.time import step_boundaries, unwarp_sigma, warp_sigma

__all__ = [
    "ArcFlowPolicy",
    "phi",
    "step_boundaries",
    "unwarp_sigma",
    "warp_sigma",
]
