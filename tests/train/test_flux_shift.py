"""FLUX training applies the base's timestep shift, and sigma_sqrt weights are normalised.

The references are diffusers' own code (FlowMatchEulerDiscreteScheduler.set_timesteps and
pipeline_flux.calculate_shift) or formulas typed from the scheduler source, never fitad's helpers.
"""

from __future__ import annotations

import math

import pytest
import torch

from fitad.config import ConfigError
from fitad.train import losses
from fitad.train.config import FluxLoraConfig

FAST = dict(rank=4, resolution=64, batch_size=2, steps=2, checkpoint_every=0, validation_every=0,
            max_sequence_length=16)


def _scheduler(**config):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**config)


def _reference(scheduler, raw: torch.Tensor, mu: float | None = None) -> torch.Tensor:
    """The scheduler's own shift of ``raw`` sigmas (set_timesteps with custom sigmas)."""
    scheduler.set_timesteps(sigmas=raw.tolist(), mu=mu)
    return scheduler.sigmas[:-1]  # the terminal 0 is appended by set_timesteps


RAW = torch.tensor([0.001, 0.05, 0.2, 0.5, 0.8, 0.95, 0.999])


def test_static_shift_matches_the_scheduler():
    scheduler = _scheduler(shift=3.0, use_dynamic_shifting=False)
    got = losses.shift_flow_sigmas(RAW, scheduler.config, image_seq_len=1024)
    assert torch.allclose(got, _reference(scheduler, RAW), atol=1e-6)
    # and by hand: shift * s / (1 + (shift - 1) * s) at s = 0.5 -> 1.5 / 2 = 0.75
    assert got[3].item() == pytest.approx(0.75)


@pytest.mark.parametrize("seq_len", [16, 256, 1024, 4096])
def test_dynamic_shift_matches_the_scheduler_and_calculate_shift(tiny_flux, seq_len):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_flux, subfolder="scheduler")
    cfg = scheduler.config
    assert cfg.use_dynamic_shifting  # FLUX.1-dev's scheduler config, copied by tiny-flux
    mu = calculate_shift(seq_len, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    got = losses.shift_flow_sigmas(RAW, cfg, image_seq_len=seq_len)
    assert torch.allclose(got, _reference(scheduler, RAW, mu=mu), atol=1e-6)
    # exponential time shift typed from the scheduler source: e^mu / (e^mu + (1/s - 1))
    assert got[3].item() == pytest.approx(math.exp(mu) / (math.exp(mu) + 1.0))


def test_linear_time_shift_type():
    scheduler = _scheduler(use_dynamic_shifting=True, time_shift_type="linear")
    got = losses.shift_flow_sigmas(RAW, scheduler.config, image_seq_len=4096)
    assert torch.allclose(got, _reference(scheduler, RAW, mu=1.15), atol=1e-6)


def test_no_shift_config_leaves_sigmas_alone():
    assert torch.equal(losses.shift_flow_sigmas(RAW, _scheduler().config, image_seq_len=4096), RAW)


def test_sampled_distribution_moves_as_the_formula_says(tiny_flux):
    # 1024 px FLUX: 64x64 packed tokens = 4096 -> mu = max_shift = 1.15. Logit-normal sigmas have
    # median 0.5; the exponential shift is monotone, so the shifted median is e^mu / (e^mu + 1).
    from diffusers import FlowMatchEulerDiscreteScheduler

    cfg = FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_flux, subfolder="scheduler").config
    raw = losses.sample_flow_sigmas("logit_normal", 200_000, torch.Generator().manual_seed(0))
    shifted = losses.shift_flow_sigmas(raw, cfg, image_seq_len=4096)
    assert raw.median().item() == pytest.approx(0.5, abs=0.01)
    assert shifted.median().item() == pytest.approx(1 / (1 + math.exp(-1.15)), abs=0.01)  # 0.7595
    assert shifted.mean() > raw.mean() + 0.15  # more training at high noise for large images


def _recipe(tiny_flux, **overrides):
    from accelerate import Accelerator

    from fitad.train.flux_lora import FluxRecipe

    recipe = FluxRecipe(FluxLoraConfig(base_model=tiny_flux, **{**FAST, **overrides}))
    recipe.load(tiny_flux, Accelerator(cpu=True))
    return recipe


def _timesteps_seen(recipe, latents, cond, seed):
    seen = []
    real = recipe.transformer.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["timestep"].detach().clone())
        return real(*args, **kwargs)

    recipe._transformer = spy
    recipe.loss(latents, cond, torch.Generator().manual_seed(seed))
    return seen[0]


@pytest.mark.parametrize("size", [8, 32])  # latent side: 64 px and 256 px
def test_recipe_trains_on_shifted_sigmas(tiny_flux, size):
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    recipe = _recipe(tiny_flux)  # timestep_shift: auto, the default
    latents = torch.randn(2, 16, size, size, generator=torch.Generator().manual_seed(1))
    cond = recipe.encode_text(["fitadtok girl", "a picture"])
    got = _timesteps_seen(recipe, latents, cond, seed=7)

    g = torch.Generator().manual_seed(7)
    torch.randn(latents.shape, generator=g)  # the noise is drawn first
    raw = torch.sigmoid(torch.randn(2, generator=g))
    cfg = recipe.pipe.scheduler.config
    mu = calculate_shift((size // 2) ** 2, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift,
                         cfg.max_shift)
    want = math.exp(mu) / (math.exp(mu) + (1 / raw - 1))
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, raw, atol=1e-3)
    assert recipe.config.timestep_shift == "auto"


def test_timestep_shift_none_keeps_the_raw_sigmas(tiny_flux):
    recipe = _recipe(tiny_flux, timestep_shift="none")
    latents = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    got = _timesteps_seen(recipe, latents, recipe.encode_text(["a", "b"]), seed=7)
    g = torch.Generator().manual_seed(7)
    torch.randn(latents.shape, generator=g)
    assert torch.allclose(got, torch.sigmoid(torch.randn(2, generator=g)), atol=1e-7)


def test_timestep_shift_config():
    assert FluxLoraConfig().timestep_shift == "auto"
    with pytest.raises(ConfigError, match=r"train_flux\.timestep_shift"):
        FluxLoraConfig(timestep_shift="static")


# ---------------------------------------------------------------- sigma_sqrt normalisation

@pytest.mark.parametrize("scheme, kwargs", [("logit_normal", {}), ("sigmoid", {"sigmoid_scale": 2.0}),
                                            ("uniform", {})])
def test_sigma_sqrt_weights_are_bounded_and_average_one(scheme, kwargs):
    # Typed from the definition: raw weight 1/sigma^2; the samples are what training draws.
    sigmas = losses.sample_flow_sigmas(scheme, 100_000, torch.Generator().manual_seed(0), **kwargs)
    mean_weight = losses.mean_flow_weight("sigma_sqrt", scheme, **kwargs)
    weights = losses.flow_loss_weights("sigma_sqrt", sigmas, mean_weight)
    assert weights.max().item() <= 1e3  # was 1e6 at sigma -> 0
    assert math.isfinite(weights.max().item())
    assert weights.mean().item() == pytest.approx(1.0, rel=0.05)  # loss on the unweighted scale
    # still sigma^-2 shaped: sigma = 0.25 weighs 4x sigma = 0.5
    pair = losses.flow_loss_weights("sigma_sqrt", torch.tensor([0.5, 0.25]), mean_weight)
    assert (pair[1] / pair[0]).item() == pytest.approx(4.0)


def test_sigma_sqrt_loss_scale_is_comparable_to_unweighted():
    g = torch.Generator().manual_seed(0)
    sigmas = losses.sample_flow_sigmas("logit_normal", 4096, g)
    pred, target = torch.randn(4096, 4, generator=g), torch.zeros(4096, 4)
    plain = losses.weighted_mse(pred, target, losses.flow_loss_weights("none", sigmas)).item()
    mean_weight = losses.mean_flow_weight("sigma_sqrt", "logit_normal")
    weighted = losses.weighted_mse(pred, target, losses.flow_loss_weights("sigma_sqrt", sigmas, mean_weight)).item()
    assert 0.5 < weighted / plain < 2.0


def test_sigma_sqrt_recipe_loss_is_on_the_unweighted_scale(tiny_flux):
    # The same batch, noise and sigmas with and without sigma_sqrt: the weighted loss must not be
    # an order of magnitude larger (unnormalised 1/sigma^2 averages ~10 and reaches 1e6).
    latents = torch.randn(256, 16, 2, 2, generator=torch.Generator().manual_seed(1))
    values = {}
    for weighting in ("none", "sigma_sqrt"):
        recipe = _recipe(tiny_flux, loss_weighting=weighting)
        cond = recipe.encode_text(["fitadtok girl"])
        cond = {k: v.expand(256, *v.shape[1:]) for k, v in cond.items()}
        with torch.no_grad():
            values[weighting] = recipe.loss(latents, cond, torch.Generator().manual_seed(3)).item()
    assert 0.5 < values["sigma_sqrt"] / values["none"] < 2.0


def test_mean_weight_follows_the_shift(tiny_flux):
    from diffusers import FlowMatchEulerDiscreteScheduler

    cfg = FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_flux, subfolder="scheduler").config
    shift = lambda s: losses.shift_flow_sigmas(s, cfg, image_seq_len=4096)  # noqa: E731
    sigmas = shift(losses.sample_flow_sigmas("logit_normal", 100_000, torch.Generator().manual_seed(1)))
    mean_weight = losses.mean_flow_weight("sigma_sqrt", "logit_normal", shift=shift)
    assert losses.flow_loss_weights("sigma_sqrt", sigmas, mean_weight).mean().item() == pytest.approx(1.0, rel=0.05)
    assert losses.mean_flow_weight("none", "logit_normal") == 1.0
