"""Loss helpers against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from fitad.train import losses


def test_compute_snr_matches_alpha_bar_ratio():
    alphas_cumprod = torch.tensor([0.9, 0.5, 0.2])
    snr = losses.compute_snr(alphas_cumprod, torch.tensor([0, 1, 2]))
    assert torch.allclose(snr, torch.tensor([9.0, 1.0, 0.25]))


def test_compute_snr_agrees_with_diffusers():
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr as diffusers_snr

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t = torch.tensor([0, 10, 500, 999])
    assert torch.allclose(losses.compute_snr(scheduler.alphas_cumprod, t), diffusers_snr(scheduler, t), rtol=1e-5)


def test_min_snr_weights_epsilon():
    snr = torch.tensor([10.0, 5.0, 1.0, 0.0])
    # min(snr, 5) / snr: 5/10, 5/5, 1/1, and the limit 1 at snr = 0
    assert torch.allclose(losses.min_snr_weights(snr, 5.0, "epsilon"), torch.tensor([0.5, 1.0, 1.0, 1.0]))


def test_min_snr_weights_v_prediction():
    snr = torch.tensor([10.0, 4.0, 0.0])
    # min(snr, 5) / (snr + 1): 5/11, 4/5, 0/1
    assert torch.allclose(losses.min_snr_weights(snr, 5.0, "v_prediction"), torch.tensor([5 / 11, 0.8, 0.0]))


def test_min_snr_disabled_and_bad_input():
    snr = torch.tensor([3.0, 30.0])
    assert torch.equal(losses.min_snr_weights(snr, None, "epsilon"), torch.ones(2))
    with pytest.raises(ValueError, match="snr_gamma"):
        losses.min_snr_weights(snr, 0.0, "epsilon")
    with pytest.raises(ValueError, match="prediction_type"):
        losses.min_snr_weights(snr, 5.0, "sample")


def test_offset_noise_adds_one_constant_per_channel():
    noise = torch.zeros(2, 3, 4, 4)
    shifted = losses.offset_noise(noise, 0.1, torch.Generator().manual_seed(0))
    expected = 0.1 * torch.randn((2, 3, 1, 1), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(shifted, expected.expand_as(shifted))
    assert losses.offset_noise(noise, 0.0) is noise


def test_v_prediction_target():
    latents, noise = torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 3.0)
    alphas_cumprod = torch.tensor([0.36])  # sqrt = 0.6, sqrt(1 - a) = 0.8
    v = losses.diffusion_target(latents, noise, alphas_cumprod, torch.tensor([0]), "v_prediction")
    assert v.item() == pytest.approx(0.6 * 3.0 - 0.8 * 2.0)
    assert losses.diffusion_target(latents, noise, alphas_cumprod, torch.tensor([0]), "epsilon") is noise


def test_weighted_mse_weights_each_sample():
    pred = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    target = torch.zeros(2, 2)
    # per-sample MSE 1 and 2; weights 2 and 0.5 -> (2 + 1) / 2
    assert losses.weighted_mse(pred, target, torch.tensor([2.0, 0.5])).item() == pytest.approx(1.5)
    assert losses.weighted_mse(pred, target).item() == pytest.approx(1.5)


def test_flow_interpolation_and_target():
    x, noise = torch.full((2, 1, 1, 1), 1.0), torch.full((2, 1, 1, 1), -1.0)
    xt = losses.flow_interpolate(x, noise, torch.tensor([0.25, 1.0]))
    assert xt.flatten().tolist() == pytest.approx([0.5, -1.0])  # 0.75*1 + 0.25*(-1), pure noise
    assert torch.equal(losses.flow_target(x, noise), noise - x)


def test_flow_sigma_sampling():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    z = torch.randn(4, generator=g())
    logit = losses.sample_flow_sigmas("logit_normal", 4, g(), logit_mean=0.5, logit_std=2.0)
    assert torch.allclose(logit, torch.sigmoid(z * 2.0 + 0.5))
    assert torch.allclose(losses.sample_flow_sigmas("sigmoid", 4, g(), sigmoid_scale=3.0), torch.sigmoid(3.0 * z))
    uniform = losses.sample_flow_sigmas("uniform", 1000, g())
    assert 0.0 <= uniform.min() and uniform.max() < 1.0 and abs(uniform.mean().item() - 0.5) < 0.05
    with pytest.raises(ValueError, match="timestep sampling"):
        losses.sample_flow_sigmas("cosmap", 2)


def test_flow_loss_weights():
    sigmas = torch.tensor([0.5, 0.25, 0.0])
    assert torch.equal(losses.flow_loss_weights("none", sigmas), torch.ones(3))
    w = losses.flow_loss_weights("sigma_sqrt", sigmas)  # raw (mean_weight 1)
    assert w[:2].tolist() == pytest.approx([4.0, 16.0])
    assert math.isfinite(w[2].item()) and w[2].item() == pytest.approx(100.0)  # sigma floored at 0.1
    assert losses.flow_loss_weights("sigma_sqrt", sigmas, 4.0)[:2].tolist() == pytest.approx([1.0, 4.0])
