"""SD1.5-family LoRA training on tiny-sd15 (CPU): loss wiring, outputs, adapters, resume, NaN, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from fitad.config import ConfigError
from fitad.train import checkpoint as ckpt
from fitad.train.config import SDLoraConfig
from fitad.train.data import DatasetError
from fitad.train.loop import TrainingDivergedError
from fitad.train.runtime import ModelNotFoundError
from fitad.train.sd_lora import SDRecipe, train_sd_lora

from .conftest import write_dataset

FAST = dict(rank=4, resolution=64, batch_size=2, steps=2, checkpoint_every=0, validation_every=0)


def _config(base, **overrides):
    return SDLoraConfig(base_model=base, **{**FAST, **overrides})


def _keys(path):
    with safe_open(str(path), "pt") as fh:
        return list(fh.keys()), fh.metadata()


@pytest.mark.parametrize("prediction_type, snr_gamma", [("epsilon", 5.0), ("v_prediction", None)])
def test_recipe_loss_matches_hand_assembled_loss(tiny_sd15, prediction_type, snr_gamma):
    from accelerate import Accelerator

    from fitad.train import losses

    cfg = _config(tiny_sd15, prediction_type=prediction_type, snr_gamma=snr_gamma, noise_offset=0.1)
    recipe = SDRecipe(cfg)
    recipe.load(tiny_sd15, Accelerator(cpu=True))
    assert recipe.prediction_type == prediction_type
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = recipe.encode_text(["fitadtok girl", "a picture"])
    got = recipe.loss(latents, cond, torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)
    noise = torch.randn(latents.shape, generator=g)
    noise = noise + 0.1 * torch.randn((2, 4, 1, 1), generator=g)
    t = torch.randint(0, 1000, (2,), generator=g)
    acp = recipe.noise_scheduler.alphas_cumprod
    a = acp[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    target = noise if prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * latents
    with torch.no_grad():
        pred = recipe.unet(noisy, t, encoder_hidden_states=cond["encoder_hidden_states"]).sample
    per_sample = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    snr = acp[t] / (1 - acp[t])
    if snr_gamma is None:
        weights = torch.ones(2)
    else:
        weights = torch.minimum(snr, torch.tensor(snr_gamma)) / snr
    assert torch.allclose(losses.min_snr_weights(snr, snr_gamma, prediction_type), weights)
    assert got.item() == pytest.approx((per_sample * weights).mean().item(), rel=1e-5)


def test_clip_skip_uses_the_penultimate_layer(tiny_sd15):
    from accelerate import Accelerator

    recipes = {}
    for skip in (1, 2):
        recipes[skip] = SDRecipe(_config(tiny_sd15, clip_skip=skip))
        recipes[skip].load(tiny_sd15, Accelerator(cpu=True))
    te, tok = recipes[2].text_encoder, recipes[2].tokenizer
    ids = tok(["fitadtok girl"], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        out = te(ids, output_hidden_states=True)
        last = recipes[1].encode_text(["fitadtok girl"])["encoder_hidden_states"]
        penultimate = recipes[2].encode_text(["fitadtok girl"])["encoder_hidden_states"]
    assert torch.allclose(last, out.last_hidden_state)
    assert torch.allclose(penultimate, te.final_layer_norm(out.hidden_states[-2]))


@pytest.mark.parametrize("prediction_type, snr_gamma", [("auto", 5.0), ("v_prediction", None)])
def test_training_writes_the_adapter_contract(tiny_sd15, dataset_dir, tmp_path, prediction_type, snr_gamma):
    from diffusers import StableDiffusionPipeline

    from fitad.tracking import DiskTracker

    out = tmp_path / "out"
    cfg = _config(tiny_sd15, alpha=8, learning_rate=1e-2, prediction_type=prediction_type, snr_gamma=snr_gamma,
                  validation_every=2, validation_inference_steps=2, trigger="fitadtok")
    tracker = DiskTracker(out / "tracking")
    result = train_sd_lora(cfg, dataset_dir, out, tracker, show_progress=False)

    assert sorted(result.losses) == [1, 2] and all(map(torch.isfinite, map(torch.tensor, result.losses.values())))
    manifest = json.loads((out / "lora" / "fitad_lora.json").read_text())
    expected_prediction = "epsilon" if prediction_type == "auto" else "v_prediction"
    core = {k: v for k, v in manifest.items() if k not in ("training", "run", "dataset")}
    assert core == {
        "family": "sd15", "base_model": tiny_sd15, "adapter_type": "lora", "rank": 4, "alpha": 8.0,
        "target_modules": ["to_q", "to_k", "to_v", "to_out.0"], "text_encoder_lora": False,
        "trigger": "fitadtok", "resolution": 64, "steps": 2, "dataset_hash": manifest["dataset_hash"],
        "prediction_type": expected_prediction, "weights": "pytorch_lora_weights.safetensors", "clip_skip": 2}
    # what export turns into ss_* / modelspec keys: the training settings, the run's times, the dataset
    assert manifest["training"]["learning_rate"] == 1e-2 and manifest["training"]["snr_gamma"] == snr_gamma
    assert manifest["dataset"]["num_images"] == 4 and manifest["run"]["finished_at"]
    keys, metadata = _keys(out / "lora" / "pytorch_lora_weights.safetensors")
    assert keys and all(k.startswith("unet.") for k in keys) and "lora_adapter_metadata" in metadata
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_loss"] == result.losses[2]
    assert summary["steps_per_s"] > 0 and summary["peak_memory_mb"] > 0 and summary["dataset_size"] == 4
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (out / "validation" / "step_000002_0.png").is_file()
    assert (out / "checkpoints" / "step_000002" / "state.json").is_file()  # the final step always saves
    params = json.loads((out / "tracking" / "params.json").read_text())
    assert params["dataset.hash"] == manifest["dataset_hash"] and params["dataset.size"] == "4"
    assert params["base_model"] == tiny_sd15 and params["rank"] == "4" and params["snr_gamma"] == str(snr_gamma)
    assert "backend.torch" in params
    # default validation prompts: the first caption and the trigger word
    assert sorted(p.name for p in (out / "tracking" / "images").iterdir()) == ["step_000002_0.png", "step_000002_1.png"]
    assert [r["step"] for r in tracker.metrics() if "loss" in r] == [1, 2]

    # diffusers loads the file and reproduces rank and alpha != rank; the adapter changes the output.
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="fitadtok girl", num_inference_steps=2, output_type="np")
    base = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    pipe.load_lora_weights(str(out / "lora"))
    peft_config = next(iter(pipe.unet.peft_config.values()))
    assert (peft_config.r, peft_config.lora_alpha) == (4, 8)
    tuned = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    assert abs(tuned - base).max() > 0


def test_dora_adapter(tiny_sd15, dataset_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    train_sd_lora(_config(tiny_sd15, use_dora=True, steps=1), dataset_dir, tmp_path, show_progress=False)
    assert json.loads((tmp_path / "lora" / "fitad_lora.json").read_text())["adapter_type"] == "dora"
    keys, _ = _keys(tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    assert any("lora_magnitude_vector" in k for k in keys)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None)
    pipe.load_lora_weights(str(tmp_path / "lora"))
    assert next(iter(pipe.unet.peft_config.values())).use_dora


def test_text_encoder_dora_magnitudes_survive_plain_diffusers_loading(tiny_sd15, dataset_dir, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    train_sd_lora(_config(tiny_sd15, use_dora=True, text_encoder_lora=True, steps=1, learning_rate=1e-2),
                  dataset_dir, tmp_path, show_progress=False)
    saved = load_file(str(tmp_path / "lora" / "pytorch_lora_weights.safetensors"))
    magnitudes = {k: v for k, v in saved.items() if k.startswith("text_encoder.") and "magnitude" in k}
    assert magnitudes and all(k.endswith(".lora_magnitude_vector.weight") for k in magnitudes)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None)
    pipe.load_lora_weights(str(tmp_path / "lora"))
    loaded = {name: param for name, param in pipe.text_encoder.named_parameters() if "lora_magnitude_vector" in name}
    assert len(loaded) == len(magnitudes)
    for key, value in magnitudes.items():
        module = key[len("text_encoder."):-len(".lora_magnitude_vector.weight")]
        match = [p for n, p in loaded.items() if n.startswith(module + ".lora_magnitude_vector.")]
        assert len(match) == 1 and torch.allclose(match[0].detach(), value), key


def test_lokr_adapter_is_saved_in_peft_format(tiny_sd15, dataset_dir, tmp_path):
    train_sd_lora(_config(tiny_sd15, adapter_type="lokr", steps=1), dataset_dir, tmp_path, show_progress=False)
    lora = tmp_path / "lora"
    manifest = json.loads((lora / "fitad_lora.json").read_text())
    assert manifest["adapter_type"] == "lokr" and manifest["weights"] == "peft/"
    assert not (lora / "pytorch_lora_weights.safetensors").exists()
    config = json.loads((lora / "peft" / "unet" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LOKR" and config["r"] == 4
    keys, _ = _keys(lora / "peft" / "unet" / "adapter_model.safetensors")
    assert any(k.endswith("lokr_w1") for k in keys)


def test_text_encoder_lora(tiny_sd15, dataset_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    result = train_sd_lora(_config(tiny_sd15, text_encoder_lora=True, steps=1), dataset_dir, tmp_path,
                           show_progress=False)
    assert torch.isfinite(torch.tensor(result.final_loss))
    keys, _ = _keys(tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("unet.") for k in keys)
    assert json.loads((tmp_path / "lora" / "fitad_lora.json").read_text())["text_encoder_lora"] is True
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["text_cached"] is False and summary["latents_cached"] is True
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None)
    pipe.load_lora_weights(str(tmp_path / "lora"))
    assert pipe.text_encoder.peft_config


class _Stop(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_losses(tiny_sd15, dataset_dir, tmp_path):
    cfg = _config(tiny_sd15, steps=4, checkpoint_every=2, lr_scheduler="cosine", caption_dropout=0.5,
                  random_flip=True, gradient_accumulation=2, lora_dropout=0.1)
    full = train_sd_lora(cfg, dataset_dir, tmp_path / "full", show_progress=False)

    def stop_after_two(step, loss):
        if step == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train_sd_lora(cfg, dataset_dir, tmp_path / "split", show_progress=False, on_step=stop_after_two)
    assert ckpt.latest_checkpoint(tmp_path / "split" / "checkpoints").name == "step_000002"
    resumed = train_sd_lora(cfg, dataset_dir, tmp_path / "split", show_progress=False, resume=True)

    assert resumed.start_step == 2 and sorted(resumed.losses) == [3, 4]
    got = torch.tensor([resumed.losses[s] for s in (3, 4)])
    want = torch.tensor([full.losses[s] for s in (3, 4)])
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    lines = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    full_ckpt = ckpt.load_checkpoint(tmp_path / "full" / "checkpoints" / "step_000004").trainable["unet"]
    split_ckpt = ckpt.load_checkpoint(tmp_path / "split" / "checkpoints" / "step_000004").trainable["unet"]
    assert all(torch.allclose(full_ckpt[k], split_ckpt[k], atol=1e-7) for k in full_ckpt)


def test_resume_refuses_other_adapter_settings(tiny_sd15, dataset_dir, tmp_path):
    train_sd_lora(_config(tiny_sd15, steps=1), dataset_dir, tmp_path, show_progress=False)
    with pytest.raises(ConfigError, match=r"differ from the checkpoint's .*train\.rank 4 → 8"):
        train_sd_lora(_config(tiny_sd15, steps=1, rank=8), dataset_dir, tmp_path, show_progress=False, resume=True)


def test_a_fresh_run_clears_stale_checkpoints(tiny_sd15, dataset_dir, tmp_path):
    train_sd_lora(_config(tiny_sd15, steps=2, checkpoint_every=1), dataset_dir, tmp_path, show_progress=False)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [1, 2]
    train_sd_lora(_config(tiny_sd15, steps=1), dataset_dir, tmp_path, show_progress=False)
    # step 2 of the earlier run is gone, so a later --resume cannot pick it up
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [1]
    assert json.loads((tmp_path / "lora" / "fitad_lora.json").read_text())["steps"] == 1


def test_cached_and_uncached_runs_agree(tiny_sd15, dataset_dir, tmp_path):
    cached = train_sd_lora(_config(tiny_sd15, caption_dropout=0.5), dataset_dir, tmp_path / "a", show_progress=False)
    uncached = train_sd_lora(_config(tiny_sd15, caption_dropout=0.5, cache_latents=False, cache_text_embeddings=False),
                             dataset_dir, tmp_path / "b", show_progress=False)
    summary = json.loads((tmp_path / "b" / "train_summary.json").read_text())
    assert summary["latents_cached"] is False and summary["text_cached"] is False
    assert torch.allclose(torch.tensor(list(cached.losses.values())), torch.tensor(list(uncached.losses.values())),
                          rtol=1e-4)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_sd15, dataset_dir, tmp_path, nan_loss_at_call):
    nan_loss_at_call(3)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 3.*step_000002"):
        train_sd_lora(_config(tiny_sd15, steps=4, checkpoint_every=2), dataset_dir, tmp_path, show_progress=False)
    good = ckpt.load_checkpoint(tmp_path / "checkpoints" / "step_000002")
    assert good.step == 2 and all(torch.isfinite(t).all() for t in good.trainable["unet"].values())
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints") == good.path
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["status"] == "diverged" and summary["last_checkpoint"].endswith("step_000002")
    assert not (tmp_path / "lora").exists()


def _no_model_load(monkeypatch):
    def refuse(self, *args):
        raise AssertionError("a model was loaded before the input was validated")

    monkeypatch.setattr(SDRecipe, "load", refuse)


@pytest.mark.parametrize("case, error, message", [
    ("empty", DatasetError, "is empty"),
    ("no_captions", DatasetError, "no caption"),
    ("too_small", DatasetError, "smaller than the training size"),
    ("missing_base", ModelNotFoundError, "does not exist"),
    ("hub_id_offline", ModelNotFoundError, "not in the Hugging Face cache"),
    ("adamw8bit", ConfigError, "adamw8bit"),
])
def test_bad_input_fails_before_any_model_is_loaded(tiny_sd15, tmp_path, monkeypatch, case, error, message):
    from fitad.train import runtime

    _no_model_load(monkeypatch)
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    data = write_dataset(tmp_path / "data", n=2, captions=case != "no_captions")
    overrides = {}
    if case == "empty":
        data = tmp_path / "empty"
        (data / "images").mkdir(parents=True)
    elif case == "too_small":
        overrides["resolution"] = 128
    elif case == "missing_base":
        overrides["base_model"] = str(tmp_path / "no-such-model")
    elif case == "hub_id_offline":
        overrides["base_model"] = "someone/not-a-model"
    elif case == "adamw8bit":
        overrides["optimizer"] = "adamw8bit"
    cfg = _config(overrides.pop("base_model", tiny_sd15), **overrides)
    with pytest.raises(error, match=message):
        train_sd_lora(cfg, data, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_non_finite_weights_are_never_saved_as_a_good_checkpoint(tiny_sd15, dataset_dir, tmp_path, monkeypatch):
    # The loss at step 4 is computed with the weights before step 4's update, so only the weights
    # themselves can show that update diverged.
    from fitad.train import adapters

    real = adapters.trainable_parameters
    calls = {"n": 0}

    def poisoned_after_first_checkpoint(model):
        params = real(model)
        calls["n"] += 1
        if calls["n"] > 1:
            params = {k: v.detach().clone() for k, v in params.items()}
            next(iter(params.values())).view(-1)[0] = float("inf")
        return params

    monkeypatch.setattr(adapters, "trainable_parameters", poisoned_after_first_checkpoint)
    with pytest.raises(TrainingDivergedError, match=r"weights became non-finite at step 4.*step_000002"):
        train_sd_lora(_config(tiny_sd15, steps=4, checkpoint_every=2), dataset_dir, tmp_path, show_progress=False)
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step_000002"
    good = ckpt.load_checkpoint(tmp_path / "checkpoints" / "step_000002")
    assert all(torch.isfinite(t).all() for t in good.trainable["unet"].values())


def test_resume_on_a_changed_dataset_is_refused(tiny_sd15, dataset_dir, tmp_path):
    cfg = _config(tiny_sd15, steps=2, checkpoint_every=1)
    train_sd_lora(cfg, dataset_dir, tmp_path / "run", show_progress=False)
    caption = next((dataset_dir / "images").glob("*.txt"))
    caption.write_text(caption.read_text() + " edited", encoding="utf-8")
    with pytest.raises(ConfigError, match="changed since checkpoint"):
        train_sd_lora(_config(tiny_sd15, steps=3, checkpoint_every=1), dataset_dir, tmp_path / "run",
                      resume=True, show_progress=False)
