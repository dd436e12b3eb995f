"""Loss math of diffusion LoRA training: SNR, Min-SNR weights, offset noise, flow-matching sigmas.

Small pure functions on tensors so that each can be checked against hand-computed values. Every
random draw takes an explicit ``torch.Generator`` so a resumed run replays the same numbers.
"""

from __future__ import annotations

import torch

# Below this sigma the sigma_sqrt weight (1/sigma^2) explodes; samples that close to the data carry
# almost no signal anyway.
MIN_FLOW_SIGMA = 1e-3


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


def flow_loss_weights(scheme: str, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample flow-matching loss weights: ``none`` → 1, ``sigma_sqrt`` → σ⁻² (σ clamped at 1e-3)."""
    if scheme == "none":
        return torch.ones_like(sigmas)
    if scheme == "sigma_sqrt":
        return sigmas.clamp(min=MIN_FLOW_SIGMA) ** -2.0
    raise ValueError(f"unknown loss weighting {scheme!r}: expected 'none' or 'sigma_sqrt'")


def flow_interpolate(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Rectified-flow noisy sample ``x_t = (1 − σ)·x + σ·noise`` (σ broadcast per sample)."""
    s = sigmas.to(dtype=latents.dtype).view(-1, *([1] * (latents.dim() - 1)))
    return (1.0 - s) * latents + s * noise


def flow_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Velocity the flow model regresses: ``noise − latents`` (d x_t / dσ)."""
    return noise - latents
