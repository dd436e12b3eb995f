"""Regression tests of review defects: mixed precision with text-encoder LoRA and clip skip, resume
with changed settings, long captions, crash leftovers; and the loss/clip-skip wiring checked against
independent references."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from fitad.config import ConfigError
from fitad.train import checkpoint as ckpt
from fitad.train.config import SDLoraConfig
from fitad.train.sd_lora import SDRecipe, train_sd_lora

from .conftest import write_dataset

FAST = dict(rank=4, resolution=64, batch_size=2, steps=2, checkpoint_every=0, validation_every=0)
# Well over the 77-token CLIP window of the tiny tokenizer (one token per short word).
LONG_CAPTION = "fitadtok girl, " + ", ".join(f"red hat {i}" for i in range(20))


def _config(base, **overrides):
    return SDLoraConfig(base_model=base, **{**FAST, **overrides})


def _cpu_recipe(base, **overrides):
    from accelerate import Accelerator

    recipe = SDRecipe(_config(base, **overrides))
    recipe.load(base, Accelerator(cpu=True))
    return recipe


class _Stop(Exception):
    pass


def _stop_at(step_to_stop):
    def on_step(step, loss):
        if step == step_to_stop:
            raise _Stop

    return on_step


# ---------------------------------------------------------------- 1: bf16 + text-encoder LoRA + clip skip 2

@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state: a bf16 Accelerator must not leak into the next test."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_text_encoder_lora_trains_in_bf16_with_clip_skip_2(tiny_sd15, dataset_dir, tmp_path, monkeypatch,
                                                          fresh_accelerate_state):
    from accelerate import Accelerator

    from fitad.train import loop

    # accelerate honours mixed_precision="bf16" on CPU; the runtime only turns it on with CUDA.
    monkeypatch.setattr(loop, "make_accelerator", lambda cfg: Accelerator(
        cpu=True, mixed_precision="bf16", gradient_accumulation_steps=cfg.gradient_accumulation))
    cfg = _config(tiny_sd15, text_encoder_lora=True, clip_skip=2, learning_rate=1e-3, validation_every=2,
                  validation_inference_steps=1)
    result = train_sd_lora(cfg, dataset_dir, tmp_path, show_progress=False)
    assert sorted(result.losses) == [1, 2] and all(math.isfinite(v) for v in result.losses.values())
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["mixed_precision"] == "bf16" and summary["text_cached"] is False
    assert (tmp_path / "validation" / "step_000002_0.png").is_file()


def test_clip_hidden_states_runs_the_final_norm_in_the_hidden_states_dtype():
    from types import SimpleNamespace

    from fitad.generate.clip import clip_hidden_states

    torch.manual_seed(0)
    hidden = [torch.randn(1, 5, 8) for _ in range(3)]
    norm = torch.nn.LayerNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    reference = norm(hidden[-2])  # all float32

    def encoder(ids, output_hidden_states=False):  # a wrapped encoder that upcasts its outputs to fp32
        return SimpleNamespace(hidden_states=hidden)

    encoder.final_layer_norm = norm.to(torch.bfloat16)  # frozen half-precision norm, as in mixed precision
    out = clip_hidden_states(encoder, torch.zeros(1, 5, dtype=torch.long), clip_skip=2)
    assert out.dtype == torch.float32
    # the norm's bf16 weights limit the precision, not a bf16 round trip of the activations
    assert torch.allclose(out, reference, atol=2e-2)


# ---------------------------------------------------------------- 2: resume with changed settings

def test_resume_refuses_changed_training_settings_and_lists_every_one(tiny_sd15, dataset_dir, tmp_path,
                                                                       monkeypatch):
    train_sd_lora(_config(tiny_sd15, steps=1), dataset_dir, tmp_path, show_progress=False)

    def refuse(self, *args):
        raise AssertionError("a model was loaded before the resume settings were checked")

    monkeypatch.setattr(SDRecipe, "load", refuse)
    changed = dict(learning_rate=1e-3, lr_scheduler="cosine", steps=3, batch_size=1, gradient_accumulation=2,
                   seed=7, resolution=56, random_flip=True, caption_dropout=0.25)
    with pytest.raises(ConfigError) as info:
        train_sd_lora(_config(tiny_sd15, **changed), dataset_dir, tmp_path, show_progress=False, resume=True)
    message = str(info.value)
    for expected in ("train.learning_rate 0.0001 → 0.001", "train.lr_scheduler 'constant' → 'cosine'",
                     "train.steps 1 → 3", "train.batch_size 2 → 1", "train.gradient_accumulation 1 → 2",
                     "train.seed 42 → 7", "train.resolution 64 → 56", "train.random_flip False → True",
                     "train.caption_dropout 0.0 → 0.25"):
        assert expected in message, (expected, message)
    assert "extend_steps" in message or "--extend-steps" in message
    # settings that do not change what a step computes may change freely
    monkeypatch.undo()
    result = train_sd_lora(_config(tiny_sd15, steps=1, checkpoint_every=5, keep_checkpoints=3, log_every=2,
                                   validation_every=1, validation_inference_steps=1),
                           dataset_dir, tmp_path, show_progress=False, resume=True)
    assert result.start_step == 1 and result.losses == {}


def test_resume_can_extend_steps_only_when_asked_and_recomputes_the_lr_schedule(tiny_sd15, dataset_dir,
                                                                                  tmp_path):
    cfg = _config(tiny_sd15, steps=2, checkpoint_every=1, keep_checkpoints=5, lr_scheduler="cosine",
                  learning_rate=1e-3)
    train_sd_lora(cfg, dataset_dir, tmp_path, show_progress=False)
    longer = dataclasses.replace(cfg, steps=4)
    with pytest.raises(ConfigError, match=r"train\.steps 2 → 4"):
        train_sd_lora(longer, dataset_dir, tmp_path, show_progress=False, resume=True)
    result = train_sd_lora(longer, dataset_dir, tmp_path, show_progress=False, resume=True, extend_steps=True)
    assert result.start_step == 2 and sorted(result.losses) == [3, 4]

    # The original 2-step cosine schedule had decayed to 0 at step 2; the schedule is recomputed for 4 steps,
    # so step 3 trains at lr * 0.5 * (1 + cos(pi * 2/4)) and step 4 at lr * 0.5 * (1 + cos(pi * 3/4)).
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    lrs = {x["step"]: x["lr"] for x in lines}
    assert lrs[3] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert lrs[4] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    # ... and it really trains at that rate (with the checkpoint's lr of 0 the weights would not move)
    before = ckpt.load_checkpoint(tmp_path / "checkpoints" / "step_000002").trainable["unet"]
    after = ckpt.load_checkpoint(tmp_path / "checkpoints" / "step_000003").trainable["unet"]
    assert any(not torch.equal(before[k], after[k]) for k in before)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["steps_extended_from"] == 2

    # extending never shortens: fewer steps than the checkpoint's are refused even with the flag
    with pytest.raises(ConfigError, match=r"train\.steps 4 → 3"):
        train_sd_lora(dataclasses.replace(cfg, steps=3), dataset_dir, tmp_path, show_progress=False, resume=True,
                      extend_steps=True)


def test_cli_extend_steps(tiny_sd15, dataset_dir, tmp_path):
    from click.testing import CliRunner

    from fitad.cli import cli

    params = tmp_path / "params.yaml"
    params.write_text("train:\n  rank: 4\n  resolution: 64\n  validation_every: 0\n  batch_size: 2\n")
    out = tmp_path / "run"
    common = [str(dataset_dir), str(out), "--base", tiny_sd15, "--tracker", "none", "--no-progress",
              "--params", str(params)]
    runner = CliRunner()
    assert runner.invoke(cli, ["train", *common, "--steps", "1"]).exit_code == 0
    refused = runner.invoke(cli, ["train", *common, "--steps", "2", "--resume"])
    assert refused.exit_code == 2 and "train.steps 1 → 2" in refused.output and "--extend-steps" in refused.output
    extended = runner.invoke(cli, ["train", *common, "--steps", "2", "--resume", "--extend-steps"])
    assert extended.exit_code == 0, extended.output
    assert json.loads((out / "lora" / "fitad_lora.json").read_text())["steps"] == 2
    assert "--extend-steps" in runner.invoke(cli, ["train", "--help"]).output


# ---------------------------------------------------------------- 5: captions over the CLIP window

def _long_caption_dataset(root):
    data = write_dataset(root, n=4)
    (data / "images" / "img1.txt").write_text(LONG_CAPTION, encoding="utf-8")
    return data


def test_truncated_captions_are_reported(tiny_sd15, tmp_path):
    from transformers import CLIPTokenizer

    from fitad.tracking import DiskTracker

    tokens = len(CLIPTokenizer.from_pretrained(tiny_sd15, subfolder="tokenizer")(LONG_CAPTION).input_ids)
    assert tokens > 77
    data = _long_caption_dataset(tmp_path / "data")
    out = tmp_path / "out"
    tracker = DiskTracker(out / "tracking")
    train_sd_lora(_config(tiny_sd15, steps=1), data, out, tracker, show_progress=False)
    report = json.loads((out / "train_summary.json").read_text())["captions"]
    assert report["text_window"] == 77 and report["long_prompts"] is False
    assert report["long_captions"] == 1 and report["truncated"] == 1
    assert [e["image"] for e in report["examples"]] == ["img1.png"] and report["examples"][0]["tokens"] == tokens
    past = report["examples"][0]["past_window"]  # the words the model never saw
    assert past and "fitadtok" not in past and past.replace(" ", "").endswith("redhat19")
    params = json.loads((out / "tracking" / "params.json").read_text())
    assert params["captions.truncated"] == "1" and params["captions.long_prompts"] == "False"
    assert any(r.get("captions_truncated") == 1 for r in tracker.metrics())


def test_long_prompts_encode_75_token_chunks_with_bos_and_eos(tiny_sd15):
    from fitad.generate.clip import clip_hidden_states

    recipe = _cpu_recipe(tiny_sd15, long_prompts=True, clip_skip=2)
    short = _cpu_recipe(tiny_sd15, long_prompts=False, clip_skip=2)
    tok, te = recipe.tokenizer, recipe.text_encoder
    body = tok(LONG_CAPTION, add_special_tokens=False).input_ids
    assert 75 < len(body) <= 150
    second = [tok.bos_token_id, *body[75:], tok.eos_token_id]
    second += [tok.pad_token_id] * (77 - len(second))
    with torch.no_grad():
        got = recipe.encode_text([LONG_CAPTION, "fitadtok girl"])["encoder_hidden_states"]
        truncated = short.encode_text([LONG_CAPTION, "fitadtok girl"])["encoder_hidden_states"]
        chunk2 = clip_hidden_states(te, torch.tensor([second]), 2)
        empty = short.encode_text([""])["encoder_hidden_states"]
    assert got.shape == (2, 154, truncated.shape[-1]) and truncated.shape[1] == 77
    # chunk 1 is what the 77-token window keeps; chunk 2 the rest, in its own BOS ... EOS window
    assert torch.allclose(got[0, :77], truncated[0], atol=1e-5)
    assert torch.allclose(got[0, 77:], chunk2[0], atol=1e-5)
    # a short caption in the same batch is padded with an empty chunk, as A1111 does
    assert torch.allclose(got[1, :77], truncated[1], atol=1e-5)
    assert torch.allclose(got[1, 77:], empty[0], atol=1e-5)


def test_long_prompts_train_and_validate_with_the_same_encoding(tiny_sd15, tmp_path):
    data = _long_caption_dataset(tmp_path / "data")
    runs = {}
    for name, cached in (("cached", True), ("uncached", False)):
        runs[name] = train_sd_lora(_config(tiny_sd15, long_prompts=True, cache_text_embeddings=cached,
                                           caption_dropout=0.5, validation_every=2, validation_inference_steps=1,
                                           validation_prompts=[LONG_CAPTION]),
                                   data, tmp_path / name, show_progress=False)
        report = json.loads((tmp_path / name / "train_summary.json").read_text())["captions"]
        assert report["long_prompts"] is True and report["long_captions"] == 1 and report["truncated"] == 0
        assert (tmp_path / name / "validation" / "step_000002_0.png").is_file()
    assert torch.allclose(torch.tensor(list(runs["cached"].losses.values())),
                          torch.tensor(list(runs["uncached"].losses.values())), rtol=1e-4)

    # the validation render gets the chunked embeddings, and a negative of the same length
    recipe = _cpu_recipe(tiny_sd15, long_prompts=True)
    seen = {}

    class Recorder:
        def __init__(self, **components):
            pass

        def set_progress_bar_config(self, **kwargs):
            pass

        def __call__(self, prompt_embeds, negative_prompt_embeds, **kwargs):
            seen.update(prompt=prompt_embeds, negative=negative_prompt_embeds)
            from types import SimpleNamespace

            return SimpleNamespace(images=[None])

    recipe.pipeline_cls = Recorder
    with torch.no_grad():
        recipe.render([LONG_CAPTION], None, seed=0, steps=1, guidance=7.0, resolution=64)
        want = recipe.encode_text([LONG_CAPTION])["encoder_hidden_states"]
        empty = recipe.encode_text([""])["encoder_hidden_states"]
    assert torch.allclose(seen["prompt"], want) and seen["negative"].shape == want.shape
    assert torch.allclose(seen["negative"], torch.cat([empty, empty], dim=1))


# ---------------------------------------------------------------- 7: crash leftovers

def test_prune_removes_stale_temp_dirs_and_puts_back_a_stranded_checkpoint(tmp_path):
    def save(step, keep=None):
        return ckpt.save_checkpoint(tmp_path, step, {"unet": {"w": torch.ones(2)}}, {}, {}, {"x": 1}, keep=keep)

    save(1)
    save(2)
    (tmp_path / ".step_000003.k2j4h1").mkdir()  # crash while writing step 3
    (tmp_path / ".step_000003.k2j4h1" / "adapter.safetensors").write_bytes(b"half")
    # crash between the two renames of a re-save of step 2: the complete old copy waits in the trash dir
    trash = tmp_path / ".step_000002.old.x8a1"
    trash.mkdir()
    (tmp_path / "step_000002").rename(trash / "step_000002")
    ckpt.prune_checkpoints(tmp_path, keep=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000001", "step_000002"]
    assert ckpt.load_checkpoint(tmp_path / "step_000002").step == 2


def test_resume_prunes_stale_temp_dirs_and_tolerates_a_half_written_metrics_line(tiny_sd15, dataset_dir, tmp_path):
    cfg = _config(tiny_sd15, steps=3, checkpoint_every=1)
    full = train_sd_lora(cfg, dataset_dir, tmp_path / "full", show_progress=False)
    out = tmp_path / "split"
    with pytest.raises(_Stop):
        train_sd_lora(cfg, dataset_dir, out, show_progress=False, on_step=_stop_at(2))
    stale = out / "checkpoints" / ".step_000003.crash1"
    stale.mkdir()
    (stale / "optimizer.pt").write_bytes(b"partial")
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"step": 3, "loss": 0.12')  # the process died mid-line
    resumed = train_sd_lora(cfg, dataset_dir, out, show_progress=False, resume=True)
    assert resumed.start_step == 2 and resumed.losses[3] == pytest.approx(full.losses[3], rel=1e-6)
    assert not stale.exists()
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


# ---------------------------------------------------------------- tests that test more

def test_v_prediction_min_snr_loss_through_the_recipe(tiny_sd15):
    """A v-prediction scheduler config (prediction_type 'auto') with Min-SNR γ=5, against a loss assembled here."""
    from accelerate import Accelerator
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    gamma = 5.0
    recipe = SDRecipe(_config(tiny_sd15, prediction_type="auto", snr_gamma=gamma, noise_offset=0.1))
    scheduler = DDPMScheduler.from_pretrained(tiny_sd15, subfolder="scheduler", prediction_type="v_prediction")
    recipe.setup(Accelerator(cpu=True),
                 tokenizer=CLIPTokenizer.from_pretrained(tiny_sd15, subfolder="tokenizer"),
                 text_encoder=CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder"),
                 vae=AutoencoderKL.from_pretrained(tiny_sd15, subfolder="vae"),
                 unet=UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet"), noise_scheduler=scheduler)
    assert recipe.prediction_type == "v_prediction"
    # non-zero adapter weights, so the prediction depends on the adapter too
    with torch.no_grad():
        for name, p in recipe.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = recipe.encode_text(["fitadtok girl", "a picture", ""])
    got = recipe.loss(latents, cond, torch.Generator().manual_seed(11))

    g = torch.Generator().manual_seed(11)
    noise = torch.randn(latents.shape, generator=g)
    noise = noise + 0.1 * torch.randn((3, 4, 1, 1), generator=g)
    t = torch.randint(0, 1000, (3,), generator=g)
    betas = scheduler.betas.double()
    abar = torch.cumprod(1 - betas, dim=0)[t].float()  # recomputed from the betas, not the recipe's buffer
    a = abar.view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    v_target = a.sqrt() * noise - (1 - a).sqrt() * latents
    with torch.no_grad():
        pred = recipe.unet(noisy, t, encoder_hidden_states=cond["encoder_hidden_states"]).sample
    snr = abar / (1 - abar)
    weights = torch.tensor([min(s, gamma) / (s + 1) for s in snr.tolist()])
    want = (((pred - v_target) ** 2).mean(dim=(1, 2, 3)) * weights).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-4)
    # the v-prediction weight differs from the ε one: the recipe did not fall back to ε weighting
    eps_weights = torch.clamp(gamma / snr, max=1.0)
    assert not torch.allclose(weights, eps_weights)


def test_clip_skip_2_matches_diffusers_encode_prompt_clip_skip_1(tiny_sd15):
    """A1111 clip skip 2 = diffusers ``clip_skip=1`` (one layer skipped), through diffusers' own encode_prompt."""
    from diffusers import StableDiffusionPipeline

    recipe = _cpu_recipe(tiny_sd15, clip_skip=2)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None)
    encoder = pipe.text_encoder
    if not hasattr(encoder, "text_model"):
        # diffusers 0.42 reads text_encoder.text_model.final_layer_norm, which transformers 5 removed from
        # CLIPTextModel: point that one attribute at the encoder's own norm so diffusers' code path runs.
        from types import SimpleNamespace

        with pytest.raises(AttributeError, match="text_model"):
            pipe.encode_prompt("x", "cpu", 1, False, clip_skip=1)
        object.__setattr__(encoder, "text_model", SimpleNamespace(final_layer_norm=encoder.final_layer_norm))
    prompts = ["fitadtok girl, picture 1", ""]
    with torch.no_grad():
        reference = torch.cat([pipe.encode_prompt(p, "cpu", 1, False, clip_skip=1)[0] for p in prompts])
        ours = recipe.encode_text(prompts)["encoder_hidden_states"]
        independent = encoder.final_layer_norm(
            encoder(pipe.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids,
                    output_hidden_states=True).hidden_states[-2])
        last = pipe.encode_prompt(prompts[0], "cpu", 1, False)[0]
    assert torch.allclose(ours, reference, atol=1e-5)
    assert torch.allclose(ours, independent, atol=1e-5)
    assert not torch.allclose(ours[:1], last, atol=1e-3)  # clip skip changes the conditioning
