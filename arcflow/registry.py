"""The project's mmengine registries: children of mmengine's roots, so the Runner finds what configs
name under ``default_scope='arcflow'``. Only what configs name is registered.

The lazy ``locations`` name general modules only. The tiny world registers its datasets, trainers
and named architecture sizes when it is imported: its configs say
``custom_imports = dict(imports=["arcflow.tinyworld.datasets", ...])``."""

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry(
    "model",
    parent=MMENGINE_MODELS,
    scope="arcflow",
    locations=["arcflow.models.distiller"],
)
DATASETS = Registry(
    "dataset",
    parent=MMENGINE_DATASETS,
    scope="arcflow",
    locations=[
        "arcflow.data.prompts",
        "arcflow.data.prompt_cache",
        "arcflow.data.image_latents",
    ],
)
DATA_SAMPLERS = Registry(
    "data sampler",
    parent=MMENGINE_DATA_SAMPLERS,
    scope="arcflow",
    locations=["arcflow.data.buckets"],
)
# Collate functions. mmengine looks them up without the default scope, so configs name them with
# the scope: ``collate_fn=dict(type="arcflow.collate_prompts")``.
FUNCTIONS = Registry(
    "function", parent=MMENGINE_FUNCTIONS, scope="arcflow", locations=["arcflow.data.prompt_cache"]
)
VISBACKENDS = Registry(
    "vis_backend", parent=MMENGINE_VISBACKENDS, scope="arcflow", locations=["arcflow.engine"]
)
# No project classes of these kinds: children only so that builds under scope "arcflow" find
# mmengine's without a warning.
VISUALIZERS = Registry("visualizer", parent=MMENGINE_VISUALIZERS, scope="arcflow")
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, scope="arcflow")
OPTIMIZERS = Registry("optimizer", parent=MMENGINE_OPTIMIZERS, scope="arcflow")
PARAM_SCHEDULERS = Registry(
    "parameter scheduler", parent=MMENGINE_PARAM_SCHEDULERS, scope="arcflow"
)
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="arcflow", locations=["arcflow.engine"])
OPTIM_WRAPPERS = Registry(
    "optim_wrapper", parent=MMENGINE_OPTIM_WRAPPERS, scope="arcflow", locations=["arcflow.engine"]
)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor",
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope="arcflow",
    locations=["arcflow.engine"],
)
# Named base-transformer sizes, ``transformer=dict(from_config=NAME)``: functions
# ``arch -> constructor arguments``. "full" (the released models) is built into arcflow.models;
# importing arcflow.tinyworld.architectures registers its sizes ("tiny", "toy", "benchmark").
ARCHITECTURES = Registry("transformer architecture", scope="arcflow")
