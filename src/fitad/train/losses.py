"""Loss math of diffusion LoRA training: SNR, Min-SNR weights, offset noise, flow-matching sigmas,
the FLUX timestep shift and normalised flow loss weights.

Small pure functions on tensors so that each can be checked against hand-computed values. Every
random draw takes an explicit ``torch.Generator`` so a resumed run replays the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

# The sigma_sqrt weight 1/σ² is capped by flooring σ here (a weight of at most 100): unbounded, the
# few samples drawn near the data (σ → 0, weight up to 1e6) dominate a batch's gradient although
# they carry almost no signal. Only σ < 0.1 is affected (~1.4% of logit-normal draws).
MIN_FLOW_SIGMA = 0.1
# Quantiles used to average a flow loss weight over the sigma sampling distribution.
_WEIGHT_QUANTILES = 8192


def compute_snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` of a DDPM schedule at ``timesteps``."""
    alpha_bar = alphas_cumprod.to(device=timesteps.device, dtype=torch.float32)[timesteps]
    return alpha_bar / (1.0 - alpha_bar)


def min_snr_weights(snr: torch.Tensor, gamma: float | None, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-γ (Hang et al. 2023).

    ε-prediction: ``min(snr, γ) / snr``; v-prediction: ``min(snr, γ) / (snr + 1)``.
    ``gamma=None`` disables the weighting (all ones). For ε the weight is written as
    ``min(1, γ / snr)`` so a zero-SNR timestep gets its limit 1 instead of 0/0.
    """
    if gamma is None:
        return torch.ones_like(snr)
    if gamma <= 0:
        raise ValueError(f"snr_gamma must be > 0, got {gamma}")
    if prediction_type == "epsilon":
        return torch.clamp(gamma / snr, max=1.0)
    if prediction_type == "v_prediction":
        return torch.clamp(snr, max=gamma) / (snr + 1.0)
    raise ValueError(f"unknown prediction_type {prediction_type!r}: expected 'epsilon' or 'v_prediction'")


def offset_noise(noise: torch.Tensor, offset: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add a per-image, per-channel constant (std ``offset``) to Gaussian noise.

    Lets the model learn to shift an image's mean brightness, so it can render very dark or bright
    images (Guttenberg 2023, "Diffusion with offset noise").
    """
    if offset == 0:
        return noise
    shift = torch.randn((noise.shape[0], noise.shape[1], 1, 1), generator=generator,
                        dtype=noise.dtype, device=noise.device)
    return noise + offset * shift


def diffusion_target(latents: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor,
                     timesteps: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Regression target: the noise (ε) or the velocity ``v = √ᾱ·ε − √(1−ᾱ)·x0``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        alpha_bar = alphas_cumprod.to(device=latents.device, dtype=latents.dtype)[timesteps]
        alpha_bar = alpha_bar.view(-1, *([1] * (latents.dim() - 1)))
        return alpha_bar.sqrt() * noise - (1.0 - alpha_bar).sqrt() * latents
    raise ValueError(f"unknown prediction_type {prediction_type!r}: expected 'epsilon' or 'v_prediction'")


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error averaged per sample, then weighted per sample and averaged over the batch."""
    per_sample = ((pred.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * weights.float()
    return per_sample.mean()


def sample_flow_sigmas(scheme: str, batch_size: int, generator: torch.Generator | None = None, *,
                       logit_mean: float = 0.0, logit_std: float = 1.0, sigmoid_scale: float = 1.0,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """Draw flow-matching noise levels σ ∈ (0, 1) for a batch.

    ``logit_normal``: σ = sigmoid(N(logit_mean, logit_std)) (SD3 paper);
    ``sigmoid``: σ = sigmoid(sigmoid_scale · N(0, 1)) (kohya's FLUX default);
    ``uniform``: σ ~ U(0, 1).
    """
    if scheme == "logit_normal":
        u = torch.randn(batch_size, generator=generator, device=device) * logit_std + logit_mean
        return torch.sigmoid(u)
    if scheme == "sigmoid":
        return torch.sigmoid(sigmoid_scale * torch.randn(batch_size, generator=generator, device=device))
    if scheme == "uniform":
        return torch.rand(batch_size, generator=generator, device=device)
    raise ValueError(f"unknown timestep sampling {scheme!r}: expected logit_normal, sigmoid or uniform")


def flow_shift_mu(image_seq_len: int, scheduler_config: Mapping[str, Any]) -> float:
    """Resolution-dependent shift ``mu`` of FLUX: linear in the packed image token count.

    ``base_shift`` at ``base_image_seq_len`` tokens, ``max_shift`` at ``max_image_seq_len`` (FLUX.1:
    0.5 at 256 tokens = 256 px, 1.15 at 4096 tokens = 1024 px), extrapolated outside that range, as
    FluxPipeline computes it for sampling.
    """
    c = scheduler_config
    slope = (c["max_shift"] - c["base_shift"]) / (c["max_image_seq_len"] - c["base_image_seq_len"])
    return c["base_shift"] + slope * (image_seq_len - c["base_image_seq_len"])


def shift_flow_sigmas(sigmas: torch.Tensor, scheduler_config: Mapping[str, Any], image_seq_len: int) -> torch.Tensor:
    """Apply the timestep shift of a FlowMatchEulerDiscreteScheduler config to sampled σ ∈ [0, 1].

    What the base model's scheduler does to its sampling schedule, so training sees the noise
    levels the model is run at (more weight on high noise for larger images):

    * ``use_dynamic_shifting`` (FLUX.1): ``mu`` from :func:`flow_shift_mu`, then the exponential
      time shift ``σ' = e^mu / (e^mu + (1/σ − 1))`` (or, with ``time_shift_type: linear``,
      ``σ' = mu / (mu + (1/σ − 1))``);
    * otherwise the static shift ``σ' = shift·σ / (1 + (shift − 1)·σ)`` (identity at shift 1).

    Both maps are monotone and keep 0 and 1 fixed. ``shift_terminal`` and the karras/exponential/beta
    conversions only space inference steps and are not applied.
    """
    c = scheduler_config
    if c.get("use_dynamic_shifting", False):
        mu = flow_shift_mu(image_seq_len, c)
        ratio = 1.0 / sigmas - 1.0  # inf at σ = 0 → σ' = 0
        if c.get("time_shift_type", "exponential") == "linear":
            return mu / (mu + ratio)
        return math.exp(mu) / (math.exp(mu) + ratio)
    shift = float(c.get("shift", 1.0))
    if shift == 1.0:
        return sigmas
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def flow_sigma_quantiles(scheme: str, n: int = _WEIGHT_QUANTILES, *, logit_mean: float = 0.0,
                         logit_std: float = 1.0, sigmoid_scale: float = 1.0) -> torch.Tensor:
    """``n`` evenly spaced quantiles of :func:`sample_flow_sigmas`' distribution (no randomness)."""
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    if scheme == "uniform":
        return q.float()
    z = torch.special.ndtri(q)
    if scheme == "logit_normal":
        return torch.sigmoid(z * logit_std + logit_mean).float()
    if scheme == "sigmoid":
        return torch.sigmoid(sigmoid_scale * z).float()
    raise ValueError(f"unknown timestep sampling {scheme!r}: expected logit_normal, sigmoid or uniform")


def _raw_flow_weights(scheme: str, sigmas: torch.Tensor) -> torch.Tensor:
    if scheme == "none":
        return torch.ones_like(sigmas)
    if scheme == "sigma_sqrt":
        return sigmas.clamp(min=MIN_FLOW_SIGMA) ** -2.0
    raise ValueError(f"unknown loss weighting {scheme!r}: expected 'none' or 'sigma_sqrt'")


def mean_flow_weight(weighting: str, sampling: str, *, shift: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     logit_mean: float = 0.0, logit_std: float = 1.0, sigmoid_scale: float = 1.0) -> float:
    """Expected raw loss weight under the training σ distribution (``sampling``, then ``shift``).

    The normaliser of :func:`flow_loss_weights`: a fixed number per run (and image size), computed
    from quantiles of the sampling distribution, so it is deterministic and works at batch size 1
    (a batch-mean normaliser would turn every weight into 1 there).
    """
    if weighting == "none":
        return 1.0
    sigmas = flow_sigma_quantiles(sampling, logit_mean=logit_mean, logit_std=logit_std, sigmoid_scale=sigmoid_scale)
    if shift is not None:
        sigmas = shift(sigmas)
    return float(_raw_flow_weights(weighting, sigmas).double().mean())


def flow_loss_weights(scheme: str, sigmas: torch.Tensor, mean_weight: float = 1.0) -> torch.Tensor:
    """Per-sample flow-matching loss weights: ``none`` → 1; ``sigma_sqrt`` → σ⁻² / ``mean_weight``.

    σ is floored at :data:`MIN_FLOW_SIGMA` (weights ≤ 100 before normalising). Pass
    :func:`mean_flow_weight` of the run's sampling as ``mean_weight``: the weights then average 1
    over training, so the loss (and the useful learning rate) stays on the unweighted scale instead
    of growing ~10x; the σ⁻² shape, which is what moves the optimum, is unchanged.
    """
    if mean_weight <= 0:
        raise ValueError(f"mean_weight must be > 0, got {mean_weight}")
    weights = _raw_flow_weights(scheme, sigmas)
    return weights if scheme == "none" else weights / mean_weight


def flow_interpolate(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Rectified-flow noisy sample ``x_t = (1 − σ)·x + σ·noise`` (σ broadcast per sample)."""
    s = sigmas.to(dtype=latents.dtype).view(-1, *([1] * (latents.dim() - 1)))
    return (1.0 - s) * latents + s * noise


def flow_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Velocity the flow model regresses: ``noise − latents`` (d x_t / dσ)."""
    return noise - latents
