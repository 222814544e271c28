"""The tiny world's diffusers stacks: offline tokenizers, folders the stock pipelines load, and the
shipped teachers and adapters (generation, and a short distillation that lowers the loss)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline, QwenImagePipeline
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from arcflow.models.loading import build_transformer
from arcflow.pipelines import loading
from arcflow.tinyworld.architectures import (
    FLUX_GUIDANCE_SCALE,
    FLUX_MAX_SEQUENCE_LENGTH,
    SAMPLING_DEFAULTS,
    transformer_config,
)
from arcflow.tinyworld.scenes import VOCABULARY
from arcflow.tinyworld.stack import (
    ASSEMBLERS,
    build_clip_tokenizer,
    build_qwen_tokenizer,
    build_t5_tokenizer,
    build_vae,
)

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = {"flux": FluxPipeline, "qwen_image": QwenImagePipeline}
SHIPPED = {"flux": ROOT / "checkpoints/tiny-flux", "qwen_image": ROOT / "checkpoints/tiny-qwen"}
PROMPT = "a large red circle at the top left"


def _generate(arch: str, path: Path, steps: int = 2) -> torch.Tensor:
    pipe = PIPELINES[arch].from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = (
        dict(max_sequence_length=FLUX_MAX_SEQUENCE_LENGTH, guidance_scale=FLUX_GUIDANCE_SCALE)
        if arch == "flux"
        else dict(true_cfg_scale=4.0, negative_prompt="")
    )
    generator = torch.Generator().manual_seed(0)
    return pipe(
        PROMPT, height=64, width=64, num_inference_steps=steps, generator=generator,
        output_type="pt", **kwargs,
    ).images  # fmt: skip


def test_every_scene_word_is_one_token():
    text = " ".join(VOCABULARY)
    assert build_clip_tokenizer().tokenize(text) == [f"{w}</w>" for w in VOCABULARY]
    assert build_t5_tokenizer().tokenize(text) == [f"\u2581{w}" for w in VOCABULARY]
    qwen = build_qwen_tokenizer().tokenize(text)
    assert qwen == [VOCABULARY[0], *(f"\u0120{w}" for w in VOCABULARY[1:])]


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_assembled_stack_loads_offline_and_generates(tmp_path, arch):
    torch.manual_seed(0)
    transformer = build_transformer(arch, "tiny", device="cpu")
    path = ASSEMBLERS[arch](tmp_path / arch, vae=build_vae(arch), transformer=transformer)
    images = _generate(arch, path)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()
    assert transformer.config.num_layers == transformer_config(arch)["num_layers"]
    # the folder carries its pipelines' defaults, the shipped ones the same
    assert loading.sampling_defaults(str(path)) == SAMPLING_DEFAULTS[arch]
    assert loading.sampling_defaults(str(SHIPPED[arch])) == SAMPLING_DEFAULTS[arch]


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_shipped_stack_generates(arch):
    if not (SHIPPED[arch] / "transformer" / "config.json").is_file():
        pytest.skip(f"{SHIPPED[arch]} is not built (python tools/build_tiny_world.py)")
    images = _generate(arch, SHIPPED[arch], steps=4)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()
    assert images.std() > 0.05  # a scene, not a flat field


SHIPPED_FOLDERS = ("tiny-evaluator", "tiny-flux", "tiny-flux-arcflow", "tiny-flux-linear")
SHIPPED_FOLDERS += ("tiny-qwen", "tiny-qwen-arcflow", "tiny-qwen-linear")


def test_shipped_weights_stay_under_40_mb():
    files = [f for name in SHIPPED_FOLDERS for f in (ROOT / "checkpoints" / name).rglob("*")]
    assert sum(f.stat().st_size for f in files if f.is_file()) < 40 * 2**20


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_shipped_teacher_is_stored_in_half_and_loads_as_float32(arch):
    """float16 on disk keeps the shipped weights small; every loader computes in float32."""
    from safetensors import safe_open

    from arcflow.models.loading import load_base_transformer

    weights = SHIPPED[arch] / "transformer" / "diffusion_pytorch_model.safetensors"
    with safe_open(weights, "pt") as handle:
        assert {handle.get_slice(key).get_dtype() for key in handle.keys()} == {"F16"}
    transformer = load_base_transformer(SHIPPED[arch], arch)
    assert {p.dtype for p in transformer.parameters()} == {torch.float32}


@pytest.mark.parametrize("arch", ["flux", "qwen_image"])
def test_short_distillation_on_shipped_teacher_lowers_loss(arch):
    """The tiny config's distiller, on the shipped teacher, fits one fixed rollout."""
    if not (SHIPPED[arch] / "transformer" / "config.json").is_file():
        pytest.skip(f"{SHIPPED[arch]} is not built (python tools/build_tiny_world.py)")
    from arcflow.models.distiller import ArcFlowDistiller

    name = "flux" if arch == "flux" else "qwen"
    cfg = Config.fromfile(ROOT / f"configs/tiny/arcflow_tiny_{name}.py").model.to_dict()
    cfg.pop("type")
    cfg["compile"] = False  # compiling costs more than these 6 steps (tests/models: compile)
    cfg["student"]["transformer"]["from_pretrained"] = str(SHIPPED[arch])
    cfg["prompt_encoder"]["pretrained"] = str(SHIPPED[arch])
    distiller = ArcFlowDistiller(**cfg)
    batch = {"prompt": [PROMPT, "a small blue star below a green square"]}
    params = [p for p in distiller.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.Adam(params, lr=2e-3))
    # Outside a Runner the iteration is 0: every step draws the same noise and intervals.
    losses = [float(distiller.train_step(batch, wrapper)["loss"]) for _ in range(6)]
    assert losses[-1] < 0.8 * losses[0]
