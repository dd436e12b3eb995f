"""``gradient_checkpointing: auto`` and the deferred loss sync (``log_every``) of the training loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fitad.config import ConfigError, from_mapping, load_section
from fitad.train import checkpoint as ckpt
from fitad.train import runtime
from fitad.train.config import FluxLoraConfig, SDLoraConfig
from fitad.train.loop import TrainingDivergedError, train_lora
from fitad.train.sd_lora import SDRecipe

REPO = Path(__file__).resolve().parents[2]
FAST = dict(rank=4, resolution=64, batch_size=2, steps=2, checkpoint_every=0, validation_every=0)
GB = 2**30


def _config(base, **overrides):
    return SDLoraConfig(base_model=base, **{**FAST, **overrides})


# ---------------------------------------------------------------- config

def test_auto_is_the_default_for_both_families():
    assert SDLoraConfig().gradient_checkpointing == "auto"
    assert FluxLoraConfig().gradient_checkpointing == "auto"
    assert SDLoraConfig().log_every == "auto"
    assert load_section(SDLoraConfig, REPO / "params.yaml").gradient_checkpointing == "auto"
    assert load_section(FluxLoraConfig, REPO / "params.yaml").gradient_checkpointing == "auto"


@pytest.mark.parametrize("value, want", [(True, True), (False, False), ("auto", "auto"), ("AUTO", "auto"),
                                         ("true", True), ("off", False), ("no", False), ("on", True)])
def test_gradient_checkpointing_accepts_true_false_auto(value, want):
    for got in (SDLoraConfig(gradient_checkpointing=value).gradient_checkpointing,
                from_mapping(SDLoraConfig, {"gradient_checkpointing": value}).gradient_checkpointing):
        assert got == want and type(got) is type(want)


@pytest.mark.parametrize("key, value", [("gradient_checkpointing", "sometimes"), ("gradient_checkpointing", 2),
                                        ("log_every", 0), ("log_every", "often"), ("log_every", True)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"train\.{key}"):
        SDLoraConfig(**{key: value})


def test_log_every_resolves_per_device():
    assert runtime.resolve_log_every("auto", torch.device("cuda", 0)) == 10
    assert runtime.resolve_log_every("auto", torch.device("cpu")) == 1
    assert runtime.resolve_log_every(3, torch.device("cuda", 0)) == 3


# ---------------------------------------------------------------- the decision

def _no_probe():
    raise AssertionError("the activation probe ran")


def test_cpu_is_off_without_probing():
    used, reason = runtime.resolve_gradient_checkpointing("auto", torch.device("cpu"), _no_probe)
    assert used is False and "cpu" in reason


@pytest.mark.parametrize("requested", [True, False])
def test_an_explicit_setting_wins(requested):
    used, reason = runtime.resolve_gradient_checkpointing(requested, torch.device("cuda", 0), _no_probe)
    assert used is requested and "config" in reason


def test_cuda_budget_is_a_fraction_of_total_vram(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (30 * GB, 80 * GB))
    budget = runtime.activation_memory_budget(torch.device("cuda", 0))
    # the step may use AUTO_CHECKPOINT_VRAM_FRACTION of the card; 50 GB are already taken
    assert budget == int(runtime.AUTO_CHECKPOINT_VRAM_FRACTION * 80 * GB) - 50 * GB
    assert runtime.activation_memory_budget(torch.device("cpu")) is None


@pytest.mark.parametrize("activations, want", [(30 * GB, True), (2 * GB, False)])
def test_cuda_decision_compares_activations_with_the_budget(monkeypatch, activations, want):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (30 * GB, 80 * GB))
    used, reason = runtime.resolve_gradient_checkpointing("auto", torch.device("cuda", 0), lambda: activations)
    assert used is want and "GB" in reason


def test_saved_activation_counter_counts_what_backward_keeps():
    frozen = torch.nn.Parameter(torch.randn(128, 128), requires_grad=False)
    lora = torch.nn.Parameter(torch.zeros(128, 128))
    x = torch.randn(64, 128)
    with runtime.count_saved_activation_bytes([frozen, lora]) as counter:
        h = x @ lora          # saves x for lora's gradient: 64x128 float32
        y = torch.relu(h)     # saves its output: 64x128 float32
        z = y @ frozen        # saves the frozen weight: resident anyway, not counted
        (z + y).sum()         # saves nothing
    assert counter.bytes == 2 * 64 * 128 * 4


# ---------------------------------------------------------------- end to end on tiny-sd15

def test_auto_on_cpu_trains_without_checkpointing_and_records_why(tiny_sd15, dataset_dir, tmp_path):
    from fitad.tracking import DiskTracker

    cfg = _config(tiny_sd15)
    recipe = SDRecipe(cfg)
    train_lora(recipe, cfg, dataset_dir, tmp_path / "out", DiskTracker(tmp_path / "track"), show_progress=False)
    assert recipe.unet.is_gradient_checkpointing is False
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["gradient_checkpointing"] is False and "cpu" in summary["gradient_checkpointing_reason"]
    params = json.loads((tmp_path / "track" / "params.json").read_text())
    assert params["gradient_checkpointing"] == "auto"
    assert params["gradient_checkpointing_used"] == "False" and "cpu" in params["gradient_checkpointing_reason"]


@pytest.mark.parametrize("budget, want", [(1, True), (1 << 50, False)])
def test_auto_measures_the_activations_against_the_budget(tiny_sd15, dataset_dir, tmp_path, monkeypatch,
                                                          budget, want):
    # A device with a memory budget (CUDA in real runs): the probe counts what autograd would keep.
    monkeypatch.setattr(runtime, "activation_memory_budget", lambda device: budget)
    options = dict(steps=3, lora_dropout=0.1, caption_dropout=0.5, random_flip=True, text_encoder_lora=True)
    cfg = _config(tiny_sd15, **options)
    recipe = SDRecipe(cfg)
    auto = train_lora(recipe, cfg, dataset_dir, tmp_path / "auto", show_progress=False)
    assert recipe.unet.is_gradient_checkpointing is want
    te = recipe.text_encoder  # transformers v5 renamed is_gradient_checkpointing
    flag = "is_activation_checkpointing" if hasattr(type(te), "is_activation_checkpointing") else \
        "is_gradient_checkpointing"
    assert getattr(te, flag) is want
    summary = json.loads((tmp_path / "auto" / "train_summary.json").read_text())
    assert summary["gradient_checkpointing"] is want and "activations" in summary["gradient_checkpointing_reason"]
    # the probe moved no random stream: the run equals one with the setting fixed from the start
    fixed_cfg = _config(tiny_sd15, **options, gradient_checkpointing=want)
    fixed = train_lora(SDRecipe(fixed_cfg), fixed_cfg, dataset_dir, tmp_path / "fixed", show_progress=False)
    assert [auto.losses[s] for s in (1, 2, 3)] == pytest.approx([fixed.losses[s] for s in (1, 2, 3)], rel=1e-6)


# ---------------------------------------------------------------- host syncs

class _SyncSpy(torch.Tensor):
    """A loss tensor that counts the conversions to Python values (each one a host sync on a GPU)."""

    syncs = 0

    def item(self):
        type(self).syncs += 1
        return super().item()

    def tolist(self):
        type(self).syncs += 1
        return super().tolist()

    def __float__(self):
        type(self).syncs += 1
        return super().__float__()

    def __bool__(self):
        type(self).syncs += 1
        return super().__bool__()


def test_losses_sync_once_per_logging_window(tiny_sd15, dataset_dir, tmp_path, monkeypatch):
    real_loss = SDRecipe.loss
    monkeypatch.setattr(SDRecipe, "loss", lambda self, *a: real_loss(self, *a).as_subclass(_SyncSpy))
    _SyncSpy.syncs = 0
    cfg = _config(tiny_sd15, steps=8, log_every=4)
    result = train_lora(SDRecipe(cfg), cfg, dataset_dir, tmp_path, show_progress=False)
    assert _SyncSpy.syncs == 2  # steps 4 and 8, not two per step
    assert sorted(result.losses) == list(range(1, 9))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [4, 8] and all(x["step_time_s"] > 0 for x in lines)


def test_a_deferred_nan_is_still_caught_before_the_next_checkpoint(tiny_sd15, dataset_dir, tmp_path,
                                                                   nan_loss_at_call):
    nan_loss_at_call(3)
    cfg = _config(tiny_sd15, steps=8, checkpoint_every=2, log_every=8)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 3.*step_000002"):
        train_lora(SDRecipe(cfg), cfg, dataset_dir, tmp_path, show_progress=False)
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step_000002"
    good = ckpt.load_checkpoint(tmp_path / "checkpoints" / "step_000002")
    assert all(torch.isfinite(t).all() for t in good.trainable["unet"].values())
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["status"] == "diverged" and summary["last_checkpoint"].endswith("step_000002")
