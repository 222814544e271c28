"""The project's mmengine registries: children of mmengine's roots, so the Runner finds what configs
name under ``default_scope='arcflow'``. Only what configs name is registered."""

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

MODELS = Registry("model", parent=MMENGINE_MODELS, scope="arcflow", locations=["arcflow.models"])
DATASETS = Registry(
    "dataset", parent=MMENGINE_DATASETS, scope="arcflow", locations=["arcflow.data"]
)
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="arcflow", locations=["arcflow.engine"])
MODEL_WRAPPERS = Registry(
    "model_wrapper", parent=MMENGINE_MODEL_WRAPPERS, scope="arcflow", locations=["arcflow.engine"]
)
OPTIM_WRAPPERS = Registry(
    "optim_wrapper", parent=MMENGINE_OPTIM_WRAPPERS, scope="arcflow", locations=["arcflow.engine"]
)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor",
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope="arcflow",
    locations=["arcflow.engine"],
)
