"""Bad inputs: a clear EvalError naming the folder, the adapter or the config key, before any long work."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from fitad.evaluate import EvalError, evaluate_lora


def _run(cfg, lora, dataset, out, renderer=None):
    return evaluate_lora(cfg, lora, dataset, out, show_progress=False, renderer=renderer)


def test_dataset_without_images(tmp_path, eval_config, adapters):
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "images" / "notes.txt").write_text("sks", encoding="utf-8")
    with pytest.raises(EvalError, match="no training images") as err:
        _run(eval_config(), adapters["random"], empty, tmp_path / "out")
    assert str(empty / "images") in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_dataset_dir(tmp_path, eval_config, adapters):
    with pytest.raises(EvalError) as err:
        _run(eval_config(), adapters["random"], tmp_path / "nowhere", tmp_path / "out")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_missing_lora(tmp_path, eval_config, dataset):
    missing = tmp_path / "no_such_lora"
    with pytest.raises(EvalError) as err:
        _run(eval_config(), missing, dataset, tmp_path / "out")
    assert str(missing) in str(err.value)


def test_corrupt_lora_file(tmp_path, eval_config, dataset):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01 definitely not safetensors")
    with pytest.raises(EvalError) as err:
        _run(eval_config(), bad, dataset, tmp_path / "out")
    assert str(bad) in str(err.value)


def test_lora_that_does_not_fit_the_base_model(tmp_path, eval_config, dataset, renderer):
    """Readable weights that match no module of the base: found only when the adapter is loaded for rendering."""
    from safetensors.torch import save_file

    bad = tmp_path / "alien.safetensors"
    save_file({"lora_unet_nowhere_to_q.lora_down.weight": torch.ones(2, 8),
               "lora_unet_nowhere_to_q.lora_up.weight": torch.ones(8, 2)}, str(bad),
              metadata={"fitad_trigger": "sks"})
    with pytest.raises(EvalError) as err:
        _run(eval_config(seeds=[0], prompts=["{trigger}"]), bad, dataset, tmp_path / "out", renderer)
    assert str(bad) in str(err.value)


def test_adapter_without_trigger_needs_evaluate_trigger(tmp_path, eval_config, adapters, dataset):
    lora = shutil.copytree(adapters["random"], tmp_path / "lora")
    info = json.loads((lora / "fitad_lora.json").read_text(encoding="utf-8"))
    info["trigger"] = None
    (lora / "fitad_lora.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(EvalError, match=r"evaluate\.trigger"):
        _run(eval_config(), lora, dataset, tmp_path / "out")


@pytest.mark.parametrize("clip_model", ["fitad-missing-org/clip-that-is-not-here", "./no/such/clip-dir"])
def test_missing_clip_model_names_model_and_key(tmp_path, eval_config, adapters, dataset, clip_model):
    with pytest.raises(EvalError) as err:
        _run(eval_config(clip_model=clip_model), adapters["random"], dataset, tmp_path / "out")
    assert "evaluate.clip_model" in str(err.value) and clip_model in str(err.value)


def test_missing_base_model_names_the_key(tmp_path, eval_config, adapters, dataset):
    with pytest.raises(EvalError, match=r"evaluate\.base_model") as err:
        _run(eval_config(base_model=str(tmp_path / "no-base")), adapters["random"], dataset, tmp_path / "out")
    assert str(tmp_path / "no-base") in str(err.value)
