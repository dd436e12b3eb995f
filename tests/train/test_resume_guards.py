"""Resume refuses what would not replay the run: an older loss formulation, another mixed precision; and it
resumes from a checkpoint stranded by an interrupted write rather than an older one."""

from __future__ import annotations

import json

import pytest

from fitad.config import ConfigError
from fitad.train import checkpoint as ckpt
from fitad.train.sd_lora import train_sd_lora

from .test_defects import _config


def _edit_state(checkpoint_dir, **changes):
    state_file = checkpoint_dir / "state.json"
    state = json.loads(state_file.read_text())
    state.update(changes)  # state.json is {"step": N, **extra}
    state_file.write_text(json.dumps(state))


def _newest(out):
    return ckpt.latest_checkpoint(out / "checkpoints")


def test_checkpoint_of_another_loss_version_is_refused(tiny_sd15, dataset_dir, tmp_path):
    cfg = _config(tiny_sd15, steps=2, checkpoint_every=1)
    out = tmp_path / "run"
    train_sd_lora(cfg, dataset_dir, out, show_progress=False)
    assert ckpt.load_checkpoint(_newest(out)).extra["loss_version"] == 1
    _edit_state(_newest(out), loss_version=0)
    with pytest.raises(ConfigError, match="older sd15 loss"):
        train_sd_lora(cfg, dataset_dir, out, show_progress=False, resume=True)


def test_checkpoint_of_another_mixed_precision_is_refused(tiny_sd15, dataset_dir, tmp_path):
    cfg = _config(tiny_sd15, steps=2, checkpoint_every=1)
    out = tmp_path / "run"
    train_sd_lora(cfg, dataset_dir, out, show_progress=False)
    assert ckpt.load_checkpoint(_newest(out)).extra["mixed_precision"] == "no"
    _edit_state(_newest(out), mixed_precision="bf16")  # as if written on a GPU where auto picked bf16
    with pytest.raises(ConfigError, match="mixed precision 'bf16'"):
        train_sd_lora(cfg, dataset_dir, out, show_progress=False, resume=True)


def test_resume_uses_a_checkpoint_stranded_by_an_interrupted_write(tiny_sd15, dataset_dir, tmp_path):
    cfg = _config(tiny_sd15, steps=3, checkpoint_every=1, keep_checkpoints=3)
    full = train_sd_lora(cfg, dataset_dir, tmp_path / "full", show_progress=False)
    out = tmp_path / "run"
    train_sd_lora(cfg, dataset_dir, out, show_progress=False)
    # the crash: step 3 was being re-saved, its complete old copy waits in the trash dir
    trash = out / "checkpoints" / ".step_000003.old.x1y2"
    trash.mkdir()
    (out / "checkpoints" / "step_000003").rename(trash / "step_000003")
    extended = _config(tiny_sd15, steps=4, checkpoint_every=1, keep_checkpoints=3)
    resumed = train_sd_lora(extended, dataset_dir, out, show_progress=False, resume=True, extend_steps=True)
    assert resumed.start_step == 3          # not 2: the stranded step-3 checkpoint was put back first
    assert full.losses[3] > 0
