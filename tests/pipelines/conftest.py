"""Tiny real FLUX and Qwen-Image diffusers pipelines (the diffusers classes at toy sizes, with
random weights), built in process, saved to a folder and used from there like a downloaded model;
plus ArcFlow adapters for them, and style LoRAs of the base models. Offered as the session-scoped
``tiny_stacks`` fixture (building takes ~1 s per family)."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from tiny_models import STUDENT_KWARGS, TOY
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from arcflow.models import ArcFlowStudent, save_arcflow_adapter

LETTERS = string.ascii_lowercase + string.digits


def tiny_flux_pipeline() -> FluxPipeline:
    """Character-level CLIP/T5 tokenizers, 1-layer encoders, 1+1-block transformer, 2-level VAE
    (vae_scale_factor 2: a 32x32 image is a 16x16 latent)."""
    clip_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for piece in LETTERS:
        clip_vocab[piece] = len(clip_vocab)
        clip_vocab[f"{piece}</w>"] = len(clip_vocab)
    tokenizer = CLIPTokenizer(
        vocab=clip_vocab,
        merges=[],
        model_max_length=77,
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    special = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    tokenizer_2 = T5Tokenizer(vocab=special + [(c, -1.0) for c in LETTERS + "▁"], extra_ids=0)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            projection_dim=32,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=1,
            num_heads=2,
            dropout_rate=0.0,
        )
    )
    transformer = FluxTransformer2DModel(**TOY["flux"])
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1,
        scaling_factor=0.5,
    )
    for module in (text_encoder, text_encoder_2, transformer, vae):
        module.eval()  # T5's dropout would otherwise make one seed give different images
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def tiny_qwen_pipeline() -> QwenImagePipeline:
    """Byte-level character tokenizer, 2-layer Qwen2.5-VL, 2-block transformer, 3-level video VAE
    (vae_scale_factor 4: a 32x32 image is an 8x8 latent)."""
    printable = sorted(set(string.printable.replace(" ", "Ġ").replace("\n", "Ċ")))
    tokenizer = Qwen2Tokenizer(vocab={c: i for i, c in enumerate(printable)}, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    n = len(tokenizer)
    torch.manual_seed(0)
    text_config = dict(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        rope_scaling=dict(mrope_section=[1, 1, 2], rope_type="default", type="default"),
        rope_theta=1e6,
        vocab_size=n + 3,
        bos_token_id=n - 2,
        eos_token_id=n - 1,
    )
    vision_config = dict(
        depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config=text_config,
            vision_config=vision_config,
            hidden_size=16,
            vocab_size=n + 3,
            vision_start_token_id=n,
            vision_end_token_id=n + 1,
            vision_token_id=n + 2,
        )
    )
    transformer = QwenImageTransformer2DModel(**TOY["qwen_image"])
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.1, -0.1, 0.0, 0.2],
        latents_std=[1.5, 0.5, 1.0, 2.0],
    )
    for module in (text_encoder, transformer, vae):
        module.eval()
    return QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


@torch.no_grad()
def tiny_adapter(transformer: torch.nn.Module, arch: str, out_dir: Path, seed: int = 3) -> Path:
    """An ArcFlow adapter for ``transformer``'s architecture with every trainable tensor moved off
    its initialisation (so the student differs from the teacher), saved in the published format.
    The student is built on a copy: ``transformer`` stays a plain base."""
    base = type(transformer).from_config(transformer.config).eval()
    base.load_state_dict(transformer.state_dict())
    student = ArcFlowStudent(base, arch, **STUDENT_KWARGS)
    gen = torch.Generator().manual_seed(seed)
    for _, param in student.trainable_named_parameters():
        param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    return save_arcflow_adapter(student, out_dir)


class TinyStacks:
    """Folders of the tiny stacks: ``model(arch)`` a diffusers pipeline folder, ``adapter(arch)``
    an ArcFlow adapter folder for it; ``arch`` is ``"flux"`` or ``"qwen_image"``."""

    builders = {"flux": tiny_flux_pipeline, "qwen_image": tiny_qwen_pipeline}
    pipeline_classes = {"flux": FluxPipeline, "qwen_image": QwenImagePipeline}
    transformer_classes = {
        "flux": FluxTransformer2DModel,
        "qwen_image": QwenImageTransformer2DModel,
    }
    transformer_configs = TOY

    def __init__(self, root: Path) -> None:
        self.root = root

    def model(self, arch: str) -> Path:
        folder = self.root / f"tiny-{arch}"
        if not folder.is_dir():
            self.builders[arch]().save_pretrained(folder)
        return folder

    def adapter(self, arch: str) -> Path:
        folder = self.root / f"tiny-{arch}-arcflow"
        if not folder.is_dir():
            transformer = self.transformer_classes[arch].from_pretrained(
                self.model(arch), subfolder="transformer", local_files_only=True
            )
            tiny_adapter(transformer, arch, folder)
        return folder

    @torch.no_grad()
    def style_lora(self, arch: str, folder: Path, scale: float) -> Path:
        """A LoRA of the base model in diffusers' file format, on the attention queries and
        values and on MLP outputs that the ArcFlow LoRA adapts too; ``scale`` 0 leaves B = 0 (a
        LoRA that changes nothing)."""
        transformer = self.transformer_classes[arch].from_pretrained(
            self.model(arch), subfolder="transformer", local_files_only=True
        )
        targets = ["to_q", "to_v", "net.2"]
        transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=targets))
        gen = torch.Generator().manual_seed(5)
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
        layers = get_peft_model_state_dict(transformer)
        self.pipeline_classes[arch].save_lora_weights(folder, transformer_lora_layers=layers)
        return folder


@pytest.fixture(scope="session")
def tiny_stacks(tmp_path_factory: pytest.TempPathFactory) -> TinyStacks:
    return TinyStacks(tmp_path_factory.mktemp("tiny_stacks"))
