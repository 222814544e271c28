# Distil Qwen-Image-2512 (Qwen-Image's December 2025 weights: the same QwenImageTransformer2DModel
# class, text encoder and VAE) with the released Qwen-Image recipe, unchanged. The adapter it
# writes is a Qwen-Image adapter of the published format; sample it on the 2512 base:
#   python tools/train.py configs/qwen/arcflow_qwen_2512.py
#   python inference_qwen.py --model Qwen/Qwen-Image-2512 --adapter DIR --prompt "..."
# An adapter distilled from Qwen-Image (the original weights) is not one of this base: LoRAs made
# for one set of weights drift on the other, so distil from the weights you sample.
_base_ = ["./arcflow_qwen.py"]

_model = "Qwen/Qwen-Image-2512"
model = dict(
    student=dict(transformer=dict(from_pretrained=_model)),
    prompt_encoder=dict(pretrained=_model),
)
