"""The scores against an independent CLIP computation, and what they must do for known adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fitad.evaluate import evaluate_lora

from .conftest import PROMPTS, SEEDS, read_json

TOL = 1e-4


def _rgb(path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def test_clip_scores_match_an_independent_clip_forward(evaluated, models, dataset):
    """CLIP-T, CLIP-I, effect size and pixel change recomputed from the saved files with CLIPModel's own forward:
    ``logits_per_image / logit_scale.exp()`` is the image-text cosine, ``image_embeds`` are unit vectors."""
    from transformers import CLIPModel, CLIPProcessor

    out = evaluated["out"]
    report = read_json(out / "report.json")
    rows = report["images"]
    assert [(r["template"], r["seed"]) for r in rows] == [(p, s) for p in PROMPTS for s in SEEDS]
    model = CLIPModel.from_pretrained(models["clip"]).eval()
    processor = CLIPProcessor.from_pretrained(models["clip"])
    prompts = [p.replace("{trigger}", "sks") for p in PROMPTS]   # the adapter's trigger word
    refs = [_rgb(p) for p in sorted((dataset / "images").glob("*.png"))]
    renders = [_rgb(out / r[kind]) for kind in ("base", "lora") for r in rows]
    inputs = processor(text=prompts, images=renders + refs, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**inputs)
        text_cos = (output.logits_per_image / model.logit_scale.exp()).double().numpy()   # images x prompts
    image_embeds = output.image_embeds.double().numpy()
    n = len(rows)
    base_e, lora_e, ref_e = image_embeds[:n], image_embeds[n:2 * n], image_embeds[2 * n:]
    for k, row in enumerate(rows):
        i = row["prompt_index"]
        assert row["prompt"] == prompts[i]
        assert row["clip_t"] == pytest.approx(text_cos[n + k, i], abs=TOL)
        assert row["clip_t_base"] == pytest.approx(text_cos[k, i], abs=TOL)
        assert row["clip_i"] == pytest.approx(float((ref_e @ lora_e[k]).mean()), abs=TOL)
        assert row["clip_i_base"] == pytest.approx(float((ref_e @ base_e[k]).mean()), abs=TOL)
        assert row["effect_size"] == pytest.approx(1.0 - float(base_e[k] @ lora_e[k]), abs=TOL)
        a = np.asarray(renders[k], dtype=np.float64)
        b = np.asarray(renders[n + k], dtype=np.float64)
        assert row["pixel_change"] == pytest.approx(np.abs(a - b).mean() / 255.0, abs=1e-9)
    metrics = evaluated["result"].metrics
    for name in ("clip_t", "clip_t_base", "clip_i", "clip_i_base", "effect_size", "pixel_change"):
        assert metrics[name] == pytest.approx(np.mean([r[name] for r in rows]), abs=1e-12)
    assert metrics["clip_t"] == pytest.approx(np.mean([text_cos[n + k, r["prompt_index"]]
                                                       for k, r in enumerate(rows)]), abs=TOL)
    assert metrics["clip_i"] == pytest.approx(float((lora_e @ ref_e.T).mean()), abs=TOL)
    assert metrics["clip_i_delta"] == pytest.approx(metrics["clip_i"] - metrics["clip_i_base"], abs=1e-12)
    assert (metrics["n_prompts"], metrics["n_seeds"], metrics["n_reference_images"]) == (2, 2, 3)


def test_random_lora_changes_the_renders(evaluated):
    metrics = evaluated["result"].metrics
    assert metrics["effect_size"] > 1e-4
    assert metrics["pixel_change"] > 0.005
    assert all(r["pixel_change"] > 0 for r in evaluated["result"].images)


def test_all_zero_lora_has_no_effect(tmp_path, eval_config, adapters, dataset, renderer):
    result = evaluate_lora(eval_config(), adapters["zero"], dataset, tmp_path / "zero", show_progress=False,
                           renderer=renderer)
    assert result.metrics["effect_size"] == 0.0
    assert result.metrics["pixel_change"] == 0.0
    assert result.metrics["clip_t"] == result.metrics["clip_t_base"]
    assert result.metrics["clip_i"] == result.metrics["clip_i_base"]


def test_lora_scale_zero_has_no_effect(tmp_path, eval_config, adapters, dataset, renderer):
    result = evaluate_lora(eval_config(lora_scale=0.0, seeds=[0]), adapters["random"], dataset, tmp_path / "s0",
                           show_progress=False, renderer=renderer)
    assert result.metrics["effect_size"] == 0.0 and result.metrics["pixel_change"] == 0.0


def test_same_inputs_give_the_same_metrics(tmp_path, evaluated, eval_config, adapters, dataset):
    """A second run, with the renderer the stage builds itself (from evaluate.base_model), repeats the first."""
    again = evaluate_lora(eval_config(), adapters["random"], dataset, tmp_path / "again", show_progress=False)
    assert again.metrics == evaluated["result"].metrics
    for row in again.images:
        for kind in ("base", "lora"):
            assert (tmp_path / "again" / row[kind]).read_bytes() == (evaluated["out"] / row[kind]).read_bytes()


def test_exported_file_reads_trigger_and_base_model_from_its_metadata(tmp_path, eval_config, adapters, dataset,
                                                                       evaluated):
    """The kohya export of the same adapter: trigger and base model come from the file; it renders the same."""
    result = evaluate_lora(eval_config(base_model=None), adapters["kohya"], dataset, tmp_path / "kohya",
                           show_progress=False)
    report = read_json(tmp_path / "kohya" / "report.json")
    assert report["adapter"]["format"] == "kohya"
    assert report["trigger"] == "sks" and report["base_model"] == "tiny-sd15"
    assert report["images"][0]["prompt"] == "sks"
    for name in ("clip_t", "clip_i", "effect_size", "pixel_change"):
        assert result.metrics[name] == pytest.approx(evaluated["result"].metrics[name], abs=1e-6)


def test_trigger_override(tmp_path, eval_config, adapters, dataset, renderer):
    evaluate_lora(eval_config(trigger="zq", seeds=[0], prompts=["a photo of {trigger}"]), adapters["random"],
                  dataset, tmp_path / "t", show_progress=False, renderer=renderer)
    report = read_json(tmp_path / "t" / "report.json")
    assert report["trigger"] == "zq" and [r["prompt"] for r in report["images"]] == ["a photo of zq"]


def test_reference_images_capped_in_name_order(tmp_path, eval_config, adapters, dataset, renderer):
    evaluate_lora(eval_config(max_reference_images=2, seeds=[0], prompts=["{trigger}"]), adapters["random"],
                  dataset, tmp_path / "cap", show_progress=False, renderer=renderer)
    report = read_json(tmp_path / "cap" / "report.json")
    assert report["reference_images"] == ["img0.png", "img1.png"]
    assert report["metrics"]["n_reference_images"] == 2
