"""Checkpoints: atomic write, newest found by step number, full round trip including RNG."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fitad.train import checkpoint as ckpt


def _save(root, step, generator, keep=None):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    path = ckpt.save_checkpoint(root, step, {"unet": dict(model.named_parameters())}, opt.state_dict(),
                                sched.state_dict(), ckpt.capture_rng(generator), extra={"note": "x"}, keep=keep)
    return path, model, opt


def test_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(5)
    path, model, opt = _save(tmp_path, 50, gen)
    assert path.name == "step_000050" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    expected_next = torch.rand(3, generator=gen)
    loaded = ckpt.load_checkpoint(path)
    assert loaded.step == 50 and loaded.extra == {"note": "x"}
    assert torch.equal(loaded.trainable["unet"]["weight"], model.weight.detach())
    assert torch.equal(loaded.optimizer["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    gen2 = torch.Generator()
    ckpt.restore_rng(loaded.rng, gen2)
    assert torch.equal(torch.rand(3, generator=gen2), expected_next)


def test_global_rng_states_are_restored(tmp_path):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    state = ckpt.capture_rng(gen)
    draws = (torch.rand(2), random.random(), np.random.rand())
    path, _, _ = _save(tmp_path, 1, torch.Generator())
    torch.save(state, path / "rng.pt")
    ckpt.restore_rng(ckpt.load_checkpoint(path).rng, gen)
    assert torch.equal(torch.rand(2), draws[0]) and random.random() == draws[1] and np.random.rand() == draws[2]


def test_latest_is_by_step_number_and_skips_incomplete(tmp_path):
    gen = torch.Generator()
    for step in (2, 10, 9):
        _save(tmp_path, step, gen)
    (tmp_path / "step_000099").mkdir()  # no state.json: an interrupted write from an older version
    (tmp_path / ".step_000011.tmp").mkdir()
    assert ckpt.latest_checkpoint(tmp_path).name == "step_000010"
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 9, 10]
    assert ckpt.latest_checkpoint(tmp_path / "none") is None


def test_keep_prunes_oldest(tmp_path):
    gen = torch.Generator()
    for step in (1, 2, 3):
        _save(tmp_path, step, gen, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]


def test_rewriting_a_step_replaces_it(tmp_path):
    gen = torch.Generator()
    _save(tmp_path, 4, gen)
    path, model, _ = _save(tmp_path, 4, gen)
    assert torch.equal(ckpt.load_checkpoint(path).trainable["unet"]["weight"], model.weight.detach())


def test_loading_an_incomplete_checkpoint_fails(tmp_path):
    (tmp_path / "step_000001").mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        ckpt.load_checkpoint(tmp_path / "step_000001")
