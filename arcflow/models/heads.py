"""Output modules that let one transformer act as the frozen teacher or as the ArcFlow student.

diffusers' ``forward`` of FLUX and Qwen-Image ends with ``proj_out(norm_out(h, temb))``. Two of its
modules are swapped for switchable ones, so that forward runs unchanged in both roles:

- ``proj_out`` -> :class:`ArcFlowHead`: the teacher's projection or the three ArcFlow heads.
- ``norm_out.linear`` (the final AdaLN modulation) -> :class:`ForkedLinear`: the student trains its
  own copy while the teacher keeps the original, so the teacher stays the teacher as training goes.
"""

from __future__ import annotations

import torch
from torch import nn

from arcflow.models.quantization import dense_weight
from arcflow.released import RELEASED_LOG_GAMMA_RANGE


class ArcFlowHead(nn.Module):
    """The teacher's ``proj_out`` and the ArcFlow heads on the same normalised hidden state.

    Per token (``p x p`` latent pixels, ``C`` channels, ``K`` components) the student output is the
    concatenation ``[means (K*C*p*p), logits (K*p*p), log_rates ((K-1)*p*p)]`` with feature indices

        means:     k * (C*p*p) + c * p*p + i * p + j
        logits:    k * p*p + i * p + j
        log_rates: k' * p*p + i * p + j      (component k = k' + 1; component 0 has rate 0)

    i.e. the packing order ``(c, i, j)`` of the diffusers pipelines, one block per component.

    Initialisation (docs/method.md, The student: Output heads): means weight = the teacher weight
    repeated K times; means bias = teacher bias repeated K times + N(0, std^2) noise per
    (component, channel), shared by the p*p sub-pixels; logits weight and bias 0 (uniform
    mixture); log-rate weight 0, bias ``ln(gamma)`` evenly spaced over ``log_gamma_range`` (K - 1
    values; released: gamma log-spaced over [0.2, 4.0]), repeated per sub-pixel. With zero noise
    the student's velocity at sigma_src equals the teacher's.

    Args:
        teacher_proj: the transformer's original ``proj_out`` (``inner -> C*p*p``); kept, frozen.
        num_components: K.
        patch_size: p, the pixels per token side (2 for both pipelines).
        mean_bias_noise_std: std of the means bias noise; 0 gives exact teacher equality.
        generator: CPU generator for the noise (reproducible initialisation).
        dtype: dtype of the heads; None takes the teacher's weight dtype. A quantized base passes
            its compute dtype: the heads are never quantized (they start from the dequantized
            teacher weight).
        log_gamma_range: ``(r_min, r_max)``, the span of the initial ``r_k = ln(gamma_k)``: a
            component's velocity changes by the factor ``gamma_k`` per unit of sigma travelled. An
            ``r_min`` of -30 starts components that decay within a few hundredths of sigma, which a
            teacher path that turns that quickly needs (docs/results.md).
    """

    def __init__(
        self,
        teacher_proj: nn.Linear,
        num_components: int,
        patch_size: int = 2,
        mean_bias_noise_std: float = 0.05,
        generator: torch.Generator | None = None,
        log_gamma_range: tuple[float, float] = RELEASED_LOG_GAMMA_RANGE,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        if len(log_gamma_range) != 2 or not log_gamma_range[0] <= log_gamma_range[1]:
            raise ValueError(
                f"log_gamma_range must be (r_min, r_max) with r_min <= r_max, got {log_gamma_range}"
            )
        self.log_gamma_range = (float(log_gamma_range[0]), float(log_gamma_range[1]))
        pp = patch_size * patch_size
        if teacher_proj.out_features % pp:
            raise ValueError(
                f"proj_out has {teacher_proj.out_features} outputs, not a multiple of "
                f"patch_size^2 = {pp}"
            )
        self.num_components = num_components
        self.patch_size = patch_size
        self.out_channels = teacher_proj.out_features // pp
        self.student_mode = True

        inner = teacher_proj.in_features
        factory = {
            "device": teacher_proj.weight.device,
            "dtype": dtype or teacher_proj.weight.dtype,
        }
        self.teacher_proj = teacher_proj.requires_grad_(False)
        self.means = nn.Linear(inner, num_components * self.out_channels * pp, **factory)
        self.logits = nn.Linear(inner, num_components * pp, **factory)
        self.log_rates = (
            nn.Linear(inner, (num_components - 1) * pp, **factory) if num_components > 1 else None
        )
        self.reset_parameters(mean_bias_noise_std, generator)

    @torch.no_grad()
    def reset_parameters(
        self, mean_bias_noise_std: float = 0.05, generator: torch.Generator | None = None
    ) -> None:
        """(Re-)initialise the heads from the teacher projection (see the class docstring)."""
        k, c, pp = self.num_components, self.out_channels, self.patch_size**2
        teacher_w = dense_weight(self.teacher_proj, self.means.weight.dtype)
        teacher_b = self.teacher_proj.bias
        if teacher_b is None:
            teacher_b = teacher_w.new_zeros(teacher_w.shape[0])
        device = teacher_w.device

        self.means.weight.copy_(teacher_w.repeat(k, 1))
        # Noise per (component, channel), shared by the p*p sub-pixels of that channel: drawn on the
        # CPU so that a seed gives the same initialisation on every device (and works on meta).
        noise = torch.randn(k, c, 1, generator=generator, device="cpu") * mean_bias_noise_std
        noise = noise.expand(k, c, pp).reshape(-1)
        self.means.bias.copy_(teacher_b.float().repeat(k) + noise.to(device))

        nn.init.zeros_(self.logits.weight)
        nn.init.zeros_(self.logits.bias)

        if self.log_rates is not None:
            low, high = self.log_gamma_range
            log_gamma = torch.linspace(low, high, k - 1, dtype=torch.float64)
            nn.init.zeros_(self.log_rates.weight)
            self.log_rates.bias.copy_(log_gamma.repeat_interleave(pp).to(device))

    @property
    def student_features(self) -> int:
        """Width of the student output per token: ``K*C*p*p + K*p*p + (K-1)*p*p``."""
        pp = self.patch_size**2
        return pp * (self.num_components * (self.out_channels + 2) - 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, N, inner)`` -> ``(B, N, C*p*p)`` (teacher) or ``(B, N, student_features)``.

        The student heads may be kept in a wider dtype than the base (fp32 trainable tensors on a
        bf16 transformer): the hidden state is cast to theirs, and the output stays in it.
        """
        if not self.student_mode:
            return self.teacher_proj(hidden)
        hidden = hidden.to(self.means.weight.dtype)
        outputs = [self.means(hidden), self.logits(hidden)]
        if self.log_rates is not None:
            outputs.append(self.log_rates(hidden))
        return torch.cat(outputs, dim=-1)

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Student output ``(B, N, F)`` -> means ``(B, N, K, C*p*p)``, logits ``(B, N, K, p*p)``,
        log-rates ``(B, N, K-1, p*p)`` (``None`` when K = 1)."""
        k, c, pp = self.num_components, self.out_channels, self.patch_size**2
        if output.shape[-1] != self.student_features:
            raise ValueError(
                f"expected {self.student_features} student features per token, got "
                f"{output.shape[-1]}: was the head in teacher mode?"
            )
        means, logits, log_rates = output.split([k * c * pp, k * pp, (k - 1) * pp], dim=-1)
        return (
            means.unflatten(-1, (k, c * pp)),
            logits.unflatten(-1, (k, pp)),
            log_rates.unflatten(-1, (k - 1, pp)) if k > 1 else None,
        )

    def extra_repr(self) -> str:
        return (
            f"num_components={self.num_components}, out_channels={self.out_channels}, "
            f"patch_size={self.patch_size}, student_mode={self.student_mode}"
        )


class ForkedLinear(nn.Module):
    """A Linear the student trains while the teacher keeps the original.

    ``student`` starts as an exact copy of ``teacher``; ``teacher`` is frozen. The student copy may
    live in a wider dtype: its input is cast to it and its output back to the input dtype, so the
    rest of the base network computes in the base dtype in both modes. A quantized ``teacher``
    stays quantized; the copy is its dequantized weight in ``dtype`` (None: the teacher's dtype).
    """

    def __init__(self, teacher: nn.Linear, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.teacher = teacher.requires_grad_(False)
        dtype = dtype or teacher.weight.dtype
        self.student = nn.Linear(
            teacher.in_features,
            teacher.out_features,
            bias=teacher.bias is not None,
            device=teacher.weight.device,
            dtype=dtype,
        )
        with torch.no_grad():
            self.student.weight.copy_(dense_weight(teacher, dtype))
            if teacher.bias is not None:
                self.student.bias.copy_(teacher.bias)
        self.student_mode = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.student_mode:
            return self.teacher(x)
        return self.student(x.to(self.student.weight.dtype)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"student_mode={self.student_mode}"
