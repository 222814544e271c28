"""The tiny world's model stacks: offline tokenizers, tiny text encoders and VAEs (their
architectures in :mod:`arcflow.tinyworld.architectures`), and standard diffusers folders that the
stock pipelines load.

``checkpoints/tiny-flux/`` (``FluxPipeline``) and ``checkpoints/tiny-qwen/`` (``QwenImagePipeline``)
are ordinary diffusers folders: ``model_index.json``, a ``FlowMatchEulerDiscreteScheduler`` with the
released static shift 3.2, tokenizer(s), text encoder(s), VAE and transformer, plus
``sampling_defaults.json``, the image size, text length and guidance its pipelines are called with.

Tokenizers are built from the scene vocabulary (every caption word is one token), so nothing is
downloaded. The text encoders are frozen at their seeded random initialisation: a random
transformer still maps distinct captions to distinct, position-aware token features, and the image
transformer learns to read them (as a real teacher reads a pretrained encoder it never trains).

A folder is written in stages: text side and scheduler first (the teacher trainer needs the prompt
encoder), the VAE once trained, the transformer last; ``model_index.json`` names every component
from the start, and a pipeline loads with ``transformer=None, vae=None`` in the meantime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    ModelMixin,
    QwenImageTransformer2DModel,
)
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

from arcflow.models.state_match import match_state
from arcflow.pipelines.loading import SAMPLING_DEFAULTS_FILE
from arcflow.released import RELEASED_SHIFT
from arcflow.tinyworld.architectures import (
    FLUX_POOLED_DIM,
    FLUX_TEXT_DIM,
    FLUX_VAE,
    QWEN_TEXT_DIM,
    QWEN_VAE,
    SAMPLING_DEFAULTS,
)
from arcflow.tinyworld.scenes import VOCABULARY

TEXT_SEED = 0

# --------------------------------------------------------------------------- tokenizers
# The words of QwenImagePipeline's prompt template, given whole-word tokens so that the template
# is ~40 tokens as with the real tokenizer (the pipeline drops its first 34 embeddings).
_QWEN_TEMPLATE_WORDS = (
    "system Describe the image by detailing color shape size texture quantity text spatial "
    "relationships of objects and background user assistant"
).split()
QWEN_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE alphabets)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: repeatedly merge the adjacent pair of lowest rank."""
    pieces = list(pieces)
    while len(pieces) > 1:
        pairs = [
            (ranks[pair], i) for i, pair in enumerate(zip(pieces, pieces[1:])) if pair in ranks
        ]
        if not pairs:
            break
        _, i = min(pairs)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def _word_merges(words: list[list[str]], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges under which each word (given as its initial pieces) becomes one token.

    A word's chain of merges can be pre-empted by an earlier word's (``"ri"`` of ``"right"``
    inside ``"triangle"``), so merges are added from the word's actual tokenisation under the
    merges so far. A merge appended last never changes a word that already merges fully, so one
    pass suffices. New pieces are appended to ``vocab``.
    """
    ranks: dict[tuple[str, str], int] = {}
    for pieces in words:
        for piece in pieces:
            vocab.setdefault(piece, len(vocab))
        while len(current := _bpe(pieces, ranks)) > 1:
            pair = (current[0], current[1])
            ranks[pair] = len(ranks)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
    return list(ranks)


def build_clip_tokenizer() -> CLIPTokenizer:
    """CLIP BPE whose merges make every scene word one ``word</w>`` token."""
    vocab: dict[str, int] = {}
    merges = _word_merges([[*w[:-1], f"{w[-1]}</w>"] for w in VOCABULARY], vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=77,  # FluxPipeline reads it as the CLIP length
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def build_t5_tokenizer() -> T5Tokenizer:
    """Unigram T5 tokenizer with one piece per scene word."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{w}", -1.0) for w in VOCABULARY]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_qwen_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE over all 256 bytes with whole-word merges for the scene and template words.

    Space-prefixed words come first so that ``" red"`` merges into one ``"Ġred"`` token.
    """
    vocab = {char: i for i, char in enumerate(_bytes_to_unicode().values())}
    words = sorted(set(VOCABULARY) | set(_QWEN_TEMPLATE_WORDS))
    merges = _word_merges([["\u0120", *w] for w in words] + [list(w) for w in words], vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tokenizer


# --------------------------------------------------------------------------- text encoders
def build_clip_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=FLUX_POOLED_DIM,
        intermediate_size=2 * FLUX_POOLED_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(TEXT_SEED)
    return CLIPTextModel(config).eval()


def build_t5_text_encoder(tokenizer: T5Tokenizer) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=FLUX_TEXT_DIM,
        d_kv=16,
        d_ff=2 * FLUX_TEXT_DIM,
        num_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(TEXT_SEED)
    return T5EncoderModel(config).eval()


def build_qwen_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    ids = tokenizer.convert_tokens_to_ids
    head_dim = QWEN_TEXT_DIM // 4
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=QWEN_TEXT_DIM,
            intermediate_size=2 * QWEN_TEXT_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            # Multimodal RoPE: the (temporal, height, width) sections split head_dim / 2.
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 3, 3]),
            bos_token_id=ids("<|endoftext|>"),
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"),
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=QWEN_TEXT_DIM,
            fullatt_block_indexes=[0],
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == head_dim
    torch.manual_seed(TEXT_SEED)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


# --------------------------------------------------------------------------- VAEs and transformers
def build_vae(arch: str) -> AutoencoderKL | AutoencoderKLQwenImage:
    """A randomly initialised tiny VAE of ``arch``'s family (``"flux"`` / ``"qwen_image"``)."""
    if arch == "flux":
        return AutoencoderKL(**FLUX_VAE)
    if arch == "qwen_image":
        return AutoencoderKLQwenImage(**QWEN_VAE)
    raise ValueError(f"unknown architecture {arch!r}")


def scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The released sampler set-up: static shift 3.2, no resolution-dependent shift."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=RELEASED_SHIFT, use_dynamic_shifting=False
    )


_FLUX_CLASSES = {
    "scheduler": FlowMatchEulerDiscreteScheduler,
    "text_encoder": CLIPTextModel,
    "text_encoder_2": T5EncoderModel,
    "tokenizer": CLIPTokenizer,
    "tokenizer_2": T5Tokenizer,
    "transformer": FluxTransformer2DModel,
    "vae": AutoencoderKL,
}
_QWEN_CLASSES = {
    "scheduler": FlowMatchEulerDiscreteScheduler,
    "text_encoder": Qwen2_5_VLForConditionalGeneration,
    "tokenizer": Qwen2Tokenizer,
    "transformer": QwenImageTransformer2DModel,
    "vae": AutoencoderKLQwenImage,
}


def _write_model_index(out_dir: Path, pipeline: str, classes: dict[str, type]) -> None:
    import diffusers

    index: dict[str, Any] = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    for name, cls in classes.items():
        index[name] = [cls.__module__.split(".")[0], cls.__name__]
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _write_sampling_defaults(out_dir: Path, arch: str) -> None:
    """The folder's own pipeline-call defaults (image size, text length, guidance), which the
    command lines and the evaluation tools read instead of a copy of their own."""
    text = json.dumps(SAMPLING_DEFAULTS[arch], indent=2) + "\n"
    (out_dir / SAMPLING_DEFAULTS_FILE).write_text(text)


def _save(component: Any, folder: Path, fp16: bool) -> None:
    """``save_pretrained``; weights in float16 when ``fp16`` (models only), to keep files small."""
    if isinstance(component, (ModelMixin, torch.nn.Module)) and fp16:
        component = component.to(torch.float16)
    if isinstance(component, ModelMixin):
        component.save_pretrained(folder, safe_serialization=True)
    else:
        component.save_pretrained(folder)


def assemble_flux_stack(
    out_dir: str | Path,
    vae: AutoencoderKL | None = None,
    transformer: FluxTransformer2DModel | None = None,
    fp16: bool = False,
) -> Path:
    """Write (or complete) the tiny FLUX diffusers folder.

    The text side and scheduler are written when missing (deterministic from ``TEXT_SEED``); ``vae``
    and ``transformer`` are written when given. Returns the folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_model_index(out, "FluxPipeline", _FLUX_CLASSES)
    _write_sampling_defaults(out, "flux")
    if not (out / "text_encoder_2" / "config.json").is_file():
        clip, t5 = build_clip_tokenizer(), build_t5_tokenizer()
        scheduler().save_pretrained(out / "scheduler")
        clip.save_pretrained(out / "tokenizer")
        t5.save_pretrained(out / "tokenizer_2")
        _save(build_clip_text_encoder(clip), out / "text_encoder", fp16)
        _save(build_t5_text_encoder(t5), out / "text_encoder_2", fp16)
    if vae is not None:
        _save(vae, out / "vae", fp16)
    if transformer is not None:
        _save(transformer, out / "transformer", fp16)
    return out


def assemble_qwen_stack(
    out_dir: str | Path,
    vae: AutoencoderKLQwenImage | None = None,
    transformer: QwenImageTransformer2DModel | None = None,
    fp16: bool = False,
) -> Path:
    """Write (or complete) the tiny Qwen-Image diffusers folder; see :func:`assemble_flux_stack`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_model_index(out, "QwenImagePipeline", _QWEN_CLASSES)
    _write_sampling_defaults(out, "qwen_image")
    if not (out / "text_encoder" / "config.json").is_file():
        tokenizer = build_qwen_tokenizer()
        scheduler().save_pretrained(out / "scheduler")
        tokenizer.save_pretrained(out / "tokenizer")
        _save(build_qwen_text_encoder(tokenizer), out / "text_encoder", fp16)
    if vae is not None:
        _save(vae, out / "vae", fp16)
    if transformer is not None:
        _save(transformer, out / "transformer", fp16)
    return out


ASSEMBLERS = {"flux": assemble_flux_stack, "qwen_image": assemble_qwen_stack}


# --------------------------------------------------------------------------- trained weights
def load_trained(
    module: torch.nn.Module,
    run_dir: str | Path,
    prefix: str,
    ema: bool = True,
    partial: bool = False,
):
    """Load ``module`` from the latest checkpoint of a training run (``checkpoints/<run>/``).

    The run's trained model held ``module`` under attribute ``prefix`` (``"vae"``,
    ``"transformer"``); its EMA (default) or raw trainable tensors must cover ``module`` exactly,
    or, with ``partial`` (a run that trained part of it), fit it without covering it.
    """
    from safetensors.torch import load_file

    from arcflow.engine.checkpoint import latest_checkpoint

    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}: train it first")
    tensors = load_file(str(path / ("ema.safetensors" if ema else "trainable.safetensors")))
    head = f"{prefix}."
    state = {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
    # With ``partial`` a part of the model may be missing from the run; nothing else may differ.
    match = match_state(module.state_dict(), state, "checkpoint", "model")
    problems = match.problems(missing=not partial)
    if problems:
        raise KeyError(f"{path} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state, strict=False)
    return module.eval()


@torch.no_grad()
def set_latent_statistics(vae: AutoencoderKL | AutoencoderKLQwenImage, images: torch.Tensor):
    """Write the latent normalisation the pipelines apply into the VAE's config.

    ``AutoencoderKL``: one ``shift_factor`` / ``scaling_factor`` (FLUX's convention);
    ``AutoencoderKLQwenImage``: per-channel ``latents_mean`` / ``latents_std``. Measured on the
    posterior means of ``images`` (N, 3, H, W), so that the normalised latents have zero mean and
    unit variance, as the real models' do.
    """
    if isinstance(vae, AutoencoderKLQwenImage):
        z = vae.encode(images.unsqueeze(2)).latent_dist.mode()[:, :, 0]
        dims = (0, 2, 3)
        vae.register_to_config(latents_mean=z.mean(dims).tolist(), latents_std=z.std(dims).tolist())
    else:
        z = vae.encode(images).latent_dist.mode()
        vae.register_to_config(shift_factor=z.mean().item(), scaling_factor=1.0 / z.std().item())
    return vae
