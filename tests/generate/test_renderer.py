"""Renderer against independent references: diffusers' own pipelines and the verified LoRA loader.

Tiny models on the CPU, 64 px, 1-3 steps. Images are compared as uint8; a difference of 1 is allowed where
adapters take different (but equivalent) routes into the pipeline (hot-swap rank padding, folded scales).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from fitad import zoo
from fitad.generate.renderer import Progress, Renderer, RenderError
from fitad.lora.load import LoraLoadError, load_lora_into_pipeline

from .conftest import PROMPT, lora_param_count, max_diff, rss_mb, sd_pipeline, to_uint8

TOL = 1  # uint8 levels


def _photo(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, (xx + yy) / 2], axis=-1) * 200 + rng.normal(0, 10, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _mask(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return mask


# ---------------------------------------------------------------- base rendering

def test_txt2img_equals_diffusers_pipeline(make_renderer, sd_reference):
    renderer = make_renderer(clip_skip=1)
    for seed, negative in ((0, ""), (7, "blurry, low quality")):
        result = renderer.txt2img(PROMPT, negative_prompt=negative, seed=seed)
        assert result.image.dtype == np.uint8 and result.image.shape == (64, 64, 3)
        assert max_diff(result.image, sd_reference(seed=seed, negative=negative)) <= TOL
        assert result.pipeline == "StableDiffusionPipeline" and result.family == "sd15" and result.lora is None
    meta = result.metadata()
    assert meta["seed"] == 7 and meta["steps"] == 2 and meta["guidance"] == 7.0 and meta["negative_prompt"]
    assert {"adapter", "encode", "denoise", "decode", "total"} <= set(meta["timings"])


def test_clip_skip_2_equals_hand_computed_penultimate_layer(make_renderer, models):
    renderer = make_renderer(clip_skip=2)
    result = renderer.txt2img(PROMPT, seed=3)

    pipe = sd_pipeline(models["base"])
    encoder = pipe.text_encoder
    norm = (encoder.text_model if hasattr(encoder, "text_model") else encoder).final_layer_norm
    ids = pipe.tokenizer([PROMPT, ""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = norm(encoder(ids, output_hidden_states=True).hidden_states[-2])
        last = encoder(ids)[0]
        images = pipe(prompt_embeds=hidden[:1], negative_prompt_embeds=hidden[1:], num_inference_steps=2,
                      guidance_scale=7.0, width=64, height=64, output_type="np",
                      generator=torch.Generator().manual_seed(3)).images
    assert not torch.allclose(hidden, last)  # the tiny encoder has 3 layers: skip 2 is a different conditioning
    assert max_diff(result.image, to_uint8(images)) <= TOL
    assert max_diff(result.image, make_renderer(clip_skip=1).txt2img(PROMPT, seed=3).image) > TOL


def test_same_seed_same_image_other_seed_differs(make_renderer):
    renderer = make_renderer()
    first = renderer.txt2img(PROMPT, seed=11).image
    renderer.txt2img("something else entirely", seed=5)  # whatever ran in between
    again = renderer.txt2img(PROMPT, seed=11).image
    assert np.array_equal(first, again)
    assert np.array_equal(first, make_renderer().txt2img(PROMPT, seed=11).image)  # a fresh renderer too
    assert max_diff(first, renderer.txt2img(PROMPT, seed=12).image) > 10
    big = renderer.txt2img(PROMPT, seed=2**63 - 1).image  # the top of the documented range works
    assert big.shape == (64, 64, 3)


@pytest.mark.parametrize("call, field", [
    (dict(seed=-1), "seed"), (dict(seed=2**63), "seed"), (dict(seed=1.5), "seed"), (dict(seed=True), "seed"),
    (dict(seed="3"), "seed"), (dict(steps=0), "steps"), (dict(steps=201), "steps"), (dict(guidance=-0.5), "guidance"),
    (dict(guidance=51), "guidance"), (dict(width=60), "width"), (dict(height=4104), "height"),
    (dict(width=4), "width"), (dict(lora_scale=5.0), "lora_scale"),
])
def test_bad_request_raises_render_error_naming_the_field(make_renderer, call, field):
    renderer = make_renderer()
    with pytest.raises(RenderError, match=rf"^{field}\b"):
        renderer.txt2img(PROMPT, **call)


def test_bad_image_inputs_name_the_field(make_renderer):
    renderer = make_renderer()
    photo = _photo()
    with pytest.raises(RenderError, match=r"^strength"):
        renderer.img2img(photo, PROMPT, strength=0.0)
    with pytest.raises(RenderError, match=r"^mask"):
        renderer.inpaint(photo, _mask(32), PROMPT)
    with pytest.raises(RenderError, match=r"^image"):
        renderer.inpaint(photo.astype(np.float32), _mask(), PROMPT)
    with pytest.raises(RenderError, match=r"^width"):
        renderer.img2img(_photo(60), PROMPT)


def test_wrong_family_and_missing_lora_raise_lora_load_error(make_renderer, adapters, tmp_path):
    renderer = make_renderer()
    with pytest.raises(LoraLoadError, match="flux"):
        renderer.txt2img(PROMPT, lora=str(adapters["flux"]))
    with pytest.raises(LoraLoadError, match="no such"):
        renderer.txt2img(PROMPT, lora=str(tmp_path / "missing"))
    with pytest.raises(LoraLoadError):
        renderer.txt2img(PROMPT, lora="models:/not-a-valid/uri/form")
    # the renderer is still usable, with no adapter left behind
    assert renderer.txt2img(PROMPT, seed=1).lora is None
    assert renderer.adapter_stats()["base"]["loaded"] == []


# ---------------------------------------------------------------- adapters against the reference loader

LORA_CASES = {
    "lora-alpha-eq-rank": ("a", 1.0),
    "lora-alpha-ne-rank": ("b", 1.0),
    "lora-scale-0.5": ("b", 0.5),
    "kohya-export": ("kohya", 1.0),
    "text-encoder-lora": ("te", 1.0),
    "text-encoder-lora-scale-0.5": ("te", 0.5),
    "dora": ("dora", 1.0),
    "lokr": ("lokr", 0.7),
}


@pytest.mark.parametrize("case", list(LORA_CASES))
def test_lora_equals_reference_loader(case, make_renderer, adapters, sd_reference):
    key, scale = LORA_CASES[case]
    renderer = make_renderer(clip_skip=1)
    result = renderer.txt2img(PROMPT, seed=4, lora=str(adapters[key]), lora_scale=scale)
    reference = sd_reference(adapters[key], scale, seed=4)
    assert max_diff(result.image, reference) <= TOL
    assert max_diff(reference, sd_reference(seed=4)) > 5  # the adapter does change the image
    assert result.lora["scale"] == scale and result.lora["ref"] == str(adapters[key])
    assert result.lora["family"] == "sd15" and result.lora["swap"] in ("hot-slot", "loaded")
    assert result.lora["swap"] == ("hot-slot" if key in ("a", "b", "kohya") else "loaded")


def test_every_adapter_kind_in_one_renderer_twice(make_renderer, adapters, sd_reference):
    """One renderer through all LoRA kinds, forwards then backwards: hot slot, resident set and CPU LRU mix.

    (LoKr is left out here: see test_hotswap_after_lokr_is_loaded.)
    """
    renderer = make_renderer(clip_skip=1, resident_adapters=2, cached_adapters=3)
    order = [("a", 1.0), ("te", 1.0), ("b", 0.5), ("dora", 1.0), ("kohya", 1.0), ("c", 1.3), ("te", 0.5)]
    swaps = []
    for key, scale in order + order[::-1]:
        result = renderer.txt2img(PROMPT, seed=4, lora=str(adapters[key]), lora_scale=scale)
        assert max_diff(result.image, sd_reference(adapters[key], scale, seed=4)) <= TOL, (key, scale)
        swaps.append(result.lora["swap"])
        stats = renderer.adapter_stats()["base"]
        assert len(stats["loaded"]) <= 1 + 2 and stats["cpu_cached"] <= 3
    assert {"hot-slot", "hotswap", "loaded"} <= set(swaps)
    # and back to the base model
    assert max_diff(renderer.txt2img(PROMPT, seed=4).image, sd_reference(seed=4)) <= TOL


def test_no_hot_slot_while_a_lokr_is_loaded(make_renderer, adapters, sd_reference):
    """While a LoKr is loaded, LoRAs load by name (a LoKr wraps the layers an in-place swap needs)."""
    renderer = make_renderer(clip_skip=1, resident_adapters=2)
    swaps = []
    for key in ["lokr", "a", "b", "lokr", "a", "b"]:
        result = renderer.txt2img(PROMPT, seed=4, lora=str(adapters[key]))
        swaps.append(result.lora["swap"])
        assert max_diff(result.image, sd_reference(adapters[key], 1.0, seed=4)) <= TOL, key
    assert "hot" not in renderer.adapter_stats()["base"]["loaded"]
    # LRU of 2: b evicts lokr, lokr (re-read: LoKr is not CPU-cached) evicts a, a (CPU cache) evicts b, ...
    assert swaps == ["loaded", "loaded", "loaded", "loaded", "from-cpu-cache", "from-cpu-cache"], swaps


def test_hotswap_after_lokr_is_loaded(make_renderer, adapters, sd_reference):
    """A LoKr injected after the hot slot wraps its layers: later LoRAs load by name instead, nothing breaks."""
    renderer = make_renderer(clip_skip=1, resident_adapters=2)
    renderer.txt2img(PROMPT, seed=4, lora=str(adapters["a"]))      # creates the hot slot
    renderer.txt2img(PROMPT, seed=4, lora=str(adapters["lokr"]))   # LoKr on the same modules
    result = renderer.txt2img(PROMPT, seed=4, lora=str(adapters["b"]))  # RuntimeError from PEFT's hotswap
    assert max_diff(result.image, sd_reference(adapters["b"], 1.0, seed=4)) <= TOL
    result = renderer.txt2img(PROMPT, seed=4, lora=str(adapters["a"]))
    assert max_diff(result.image, sd_reference(adapters["a"], 1.0, seed=4)) <= TOL


def test_hotswap_cycle_keeps_each_adapters_own_scale(make_renderer, adapters, sd_reference):
    """A (rank 4, alpha 4) -> B (rank 8, alpha 2) -> A in one slot; B's alpha/rank differs from A's.

    PEFT keeps the first adapter's alpha / rank after an in-place swap when a weight is applied; the pool folds
    the scale into lora_A, so each adapter (and a per-request weight) must still render as the reference does.
    """
    renderer = make_renderer(clip_skip=1)
    pipe, _pool = renderer._pipe("txt2img")
    expected = [("a", 1.0, "hot-slot"), ("b", 1.0, "hotswap"), ("a", 1.0, "hotswap"), ("b", 0.5, "hotswap"),
                ("b", 1.5, "hot-slot"), ("a", 0.5, "hotswap")]
    for key, scale, how in expected:
        result = renderer.txt2img(PROMPT, seed=5, lora=str(adapters[key]), lora_scale=scale)
        assert result.lora["swap"] == how, (key, scale, result.lora["swap"])
        assert result.lora["adapter"] == "hot"
        assert max_diff(result.image, sd_reference(adapters[key], scale, seed=5)) <= TOL, (key, scale)
        stats = renderer.adapter_stats()["base"]
        assert stats["loaded"] == ["hot"] and stats["hot"] is not None
        assert list(pipe.unet.peft_config) == ["hot"]
    assert renderer.adapter_stats()["base"]["cpu_cached"] == 2


def test_resident_set_is_bounded_without_hotswap(make_renderer, adapters, sd_reference):
    renderer = make_renderer(clip_skip=1, hotswap=False, resident_adapters=2)
    pipe, _pool = renderer._pipe("txt2img")
    swaps = []
    for key in ["a", "b", "c", "a", "b", "c", "c"]:
        result = renderer.txt2img(PROMPT, seed=6, lora=str(adapters[key]))
        swaps.append(result.lora["swap"])
        loaded = renderer.adapter_stats()["base"]["loaded"]
        assert len(loaded) <= 2 and len(pipe.unet.peft_config) <= 2
        assert result.lora["adapter"] in loaded
        assert max_diff(result.image, sd_reference(adapters[key], 1.0, seed=6)) <= TOL, key
    assert swaps == ["loaded"] * 3 + ["from-cpu-cache"] * 3 + ["resident"]


@pytest.mark.parametrize("hotswap", [False, True], ids=["resident", "hotswap"])
def test_100_load_unload_cycles_do_not_grow(hotswap, make_renderer, adapters, sd_reference):
    """100 activations cycling 4 adapters (a real render every 10th): adapters, LoRA parameters and RSS bounded.

    With hot swap on, the text-encoder LoRA cannot take the hot slot, so the resident set is exercised too.
    """
    keys = ["a", "b", "c", "te" if hotswap else "d"]
    renderer = make_renderer(clip_skip=1, hotswap=hotswap, resident_adapters=2, cached_adapters=4)
    pipe, pool = renderer._pipe("txt2img")
    params: dict[int, int] = {}
    rss: dict[int, float] = {}
    bound = 2 + (1 if hotswap else 0)
    for cycle in range(1, 101):
        key = keys[(cycle - 1) % len(keys)]
        if cycle % 10 == 0:
            result = renderer.txt2img(PROMPT, seed=8, steps=1, lora=str(adapters[key]))
            assert max_diff(result.image, sd_reference(adapters[key], 1.0, seed=8, steps=1)) <= TOL, (cycle, key)
        else:
            renderer._activate(pool, str(adapters[key]), 1.0)
        assert len(pool.loaded_adapters()) <= bound and len(pool.resident) <= 2
        if cycle in (12, 100):  # same phase of the 4-adapter cycle, so the same adapters are loaded
            params[cycle] = lora_param_count(pipe.unet) + lora_param_count(pipe.text_encoder)
            rss[cycle] = rss_mb()
    assert params[12] == params[100] > 0
    assert rss[100] - rss[12] < 50, rss
    stats = renderer.adapter_stats()["base"]
    assert stats["cpu_cached"] == 4
    if hotswap:
        assert stats["activations"]["hotswap"] > 50 and "hot" in stats["loaded"]
    else:
        assert stats["activations"]["from-cpu-cache"] == 96 and stats["activations"]["loaded"] == 4


def test_two_threads_get_the_images_of_serial_calls(make_renderer, adapters):
    renderer = make_renderer()
    requests = {
        "one": dict(prompt=PROMPT, seed=21, lora=str(adapters["a"]), lora_scale=1.0),
        "two": dict(prompt="a red cup of coffee", seed=22, lora=str(adapters["te"]), lora_scale=0.8),
        "three": dict(prompt="a shop window", seed=23, lora=str(adapters["b"]), lora_scale=0.6),
    }
    serial = {name: renderer.txt2img(**req).image for name, req in requests.items()}
    plain = make_renderer()
    serial_fresh = {name: plain.txt2img(**req).image for name, req in requests.items()}
    for name in requests:  # order and history do not matter either
        assert max_diff(serial[name], serial_fresh[name]) <= TOL

    results: dict[tuple[str, int], np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(names: list[str]) -> None:
        try:
            barrier.wait()
            for i in range(3):
                for name in names:
                    results[(name, i)] = renderer.txt2img(**requests[name]).image
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(["one", "three"],)),
               threading.Thread(target=worker, args=(["two"],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == 9
    for (name, _i), image in results.items():
        assert np.array_equal(image, serial[name]), name


def test_progress_callback_once_per_step(make_renderer):
    renderer = make_renderer()
    for call, total in ((lambda cb: renderer.txt2img(PROMPT, steps=3, progress=cb), 3),
                        (lambda cb: renderer.img2img(_photo(), PROMPT, steps=4, strength=0.5, progress=cb), 2),
                        (lambda cb: renderer.inpaint(_photo(), _mask(), PROMPT, steps=3, progress=cb), 3)):
        seen: list[Progress] = []
        result = call(seen.append)
        assert [p.step for p in seen] == list(range(1, total + 1)), result.pipeline
        assert {p.total for p in seen} == {total}
        elapsed = [p.elapsed for p in seen]
        assert all(b > a for a, b in zip(elapsed, elapsed[1:])) and elapsed[0] > 0
        assert elapsed[-1] <= result.timings["total"]
    assert {p.stage for p in seen} == {"inpaint"}


# ---------------------------------------------------------------- decode

def test_decode_equals_vae_decode_and_diffusers_postprocess(make_renderer, models):
    from diffusers import AutoencoderKL
    from diffusers.image_processor import VaeImageProcessor

    latents = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    processor = VaeImageProcessor(vae_scale_factor=8)

    def reference(vae: AutoencoderKL) -> np.ndarray:
        with torch.no_grad():
            decoded = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
        return to_uint8(processor.postprocess(decoded, output_type="np"))

    renderer = make_renderer()
    pipe, _ = renderer._pipe("txt2img")
    assert renderer._decoder(pipe) is pipe.vae and pipe.vae.dtype == torch.float32  # CPU float32: its own VAE
    image = renderer._decode(pipe, latents, 96, 64)
    vae32 = AutoencoderKL.from_pretrained(models["base"], subfolder="vae")
    assert image.shape == (64, 96, 3)
    assert max_diff(image, reference(vae32)) <= TOL

    # A half-precision pipeline decodes with a float32 copy of its VAE, never in its own dtype.
    half = make_renderer(dtype="bfloat16")
    half_pipe, _ = half._pipe("txt2img")
    assert half_pipe.vae.dtype == torch.bfloat16 and half._decoder(half_pipe).dtype == torch.float32
    # the inpaint model brings its own VAE: it gets its own float32 copy, not the base's
    inpaint_pipe, _ = half._pipe("inpaint")
    inpaint_vae = half._decoder(inpaint_pipe)
    assert inpaint_vae is not half._decoder(half_pipe) and inpaint_vae.dtype == torch.float32
    for (name, own), (_n, copy) in zip(inpaint_pipe.vae.state_dict().items(), inpaint_vae.state_dict().items()):
        assert torch.equal(own.float(), copy), name
    upcast = AutoencoderKL.from_pretrained(models["base"], subfolder="vae", dtype=torch.bfloat16).to(torch.float32)
    latents = latents.to(torch.bfloat16)  # what a bfloat16 pipeline hands over; the references see the same values
    decoded = half._decode(half_pipe, latents, 96, 64)
    latents = latents.float()
    assert max_diff(decoded, reference(upcast)) <= TOL
    assert max_diff(decoded, reference(vae32)) <= 12  # only the weights' rounding differs from float32


# ---------------------------------------------------------------- img2img / inpaint / ControlNet

def test_img2img_and_inpaint_keep_size_and_equal_diffusers(make_renderer, models):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
    from PIL import Image

    renderer = make_renderer(clip_skip=1)
    photo, mask = _photo(64), _mask(64)
    wide = np.ascontiguousarray(np.concatenate([photo, photo[:, :32]], axis=1))  # 96 x 64
    out = renderer.img2img(wide, PROMPT, strength=0.6, steps=3, seed=2)
    assert out.image.shape == wide.shape and out.pipeline == "StableDiffusionImg2ImgPipeline"
    assert (out.width, out.height) == (96, 64)
    ref_pipe = StableDiffusionImg2ImgPipeline(**sd_pipeline(models["base"]).components)
    with torch.no_grad():
        ref = ref_pipe(PROMPT, image=Image.fromarray(wide), strength=0.6, num_inference_steps=3,
                       guidance_scale=7.0, output_type="np", generator=torch.Generator().manual_seed(2)).images
    assert max_diff(out.image, to_uint8(ref)) <= TOL

    wide_mask = np.ascontiguousarray(np.concatenate([mask, mask[:, :32]], axis=1))
    out = renderer.inpaint(wide, wide_mask, PROMPT, seed=2)
    assert out.image.shape == wide.shape and out.pipeline == "StableDiffusionInpaintPipeline"
    assert out.base_model == models["inpaint"]
    inpaint = StableDiffusionInpaintPipeline.from_pretrained(models["inpaint"], safety_checker=None,
                                                             requires_safety_checker=False)
    inpaint.set_progress_bar_config(disable=True)
    with torch.no_grad():
        ref = inpaint(PROMPT, image=Image.fromarray(wide), mask_image=Image.fromarray(wide_mask), width=96,
                      height=64, strength=1.0, num_inference_steps=2, guidance_scale=7.0, output_type="np",
                      generator=torch.Generator().manual_seed(2)).images
    assert max_diff(out.image, to_uint8(ref)) <= TOL

    legacy = make_renderer(inpaint_model=None).inpaint(photo, mask, PROMPT, seed=2)  # the base's own UNet
    assert legacy.image.shape == photo.shape and legacy.base_model == models["base"]


def test_inpaint_lora_goes_into_the_inpaint_model(make_renderer, adapters, models):
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    renderer = make_renderer(clip_skip=1)
    photo, mask = _photo(), _mask()
    out = renderer.inpaint(photo, mask, PROMPT, seed=3, lora=str(adapters["b"]), lora_scale=0.5)
    inpaint = StableDiffusionInpaintPipeline.from_pretrained(models["inpaint"], safety_checker=None,
                                                             requires_safety_checker=False)
    inpaint.set_progress_bar_config(disable=True)
    load_lora_into_pipeline(inpaint, adapters["b"], 0.5)
    with torch.no_grad():
        ref = inpaint(PROMPT, image=Image.fromarray(photo), mask_image=Image.fromarray(mask), strength=1.0,
                      num_inference_steps=2, guidance_scale=7.0, output_type="np",
                      generator=torch.Generator().manual_seed(3)).images
    assert max_diff(out.image, to_uint8(ref)) <= TOL
    stats = renderer.adapter_stats()
    assert stats["inpaint"]["loaded"] == ["hot"] and stats["base"]["loaded"] == []


def _edges(vertical: bool) -> np.ndarray:
    edges = np.zeros((64, 64, 3), np.uint8)
    if vertical:
        edges[:, ::8] = 255
    else:
        edges[::8, :] = 255
    return edges


def test_controlnet_inpaint_follows_the_control_image(make_renderer, guided_controlnet):
    renderer = make_renderer(controlnet_model=guided_controlnet)
    photo, mask = _photo(), _mask()
    first = renderer.inpaint(photo, mask, PROMPT, seed=1, control_image=_edges(True))
    again = renderer.inpaint(photo, mask, PROMPT, seed=1, control_image=_edges(True))
    other = renderer.inpaint(photo, mask, PROMPT, seed=1, control_image=_edges(False))
    plain = renderer.inpaint(photo, mask, PROMPT, seed=1)
    assert first.pipeline == "StableDiffusionControlNetInpaintPipeline" and first.image.shape == (64, 64, 3)
    assert plain.pipeline == "StableDiffusionInpaintPipeline"
    assert np.array_equal(first.image, again.image)
    assert max_diff(first.image, other.image) > 5
    assert max_diff(first.image, plain.image) > 5
    weak = renderer.inpaint(photo, mask, PROMPT, seed=1, control_image=_edges(False), control_scale=0.0)
    assert max_diff(weak.image, first.image) > 5
    with pytest.raises(RenderError, match="ControlNet"):
        make_renderer().inpaint(photo, mask, PROMPT, control_image=_edges(True))


def test_controlnet_inpaint_with_the_zoo_controlnet(make_renderer, models):
    renderer = make_renderer(controlnet_model=models["controlnet"])
    photo, mask = _photo(), _mask()
    first = renderer.inpaint(photo, mask, PROMPT, seed=1, control_image=_edges(True))
    assert first.pipeline == "StableDiffusionControlNetInpaintPipeline" and first.image.shape == (64, 64, 3)
    assert max_diff(first.image, renderer.inpaint(photo, mask, PROMPT, seed=1).image) > 5


def test_zoo_controlnet_control_image_changes_the_output(make_renderer, models):
    renderer = make_renderer(controlnet_model=models["controlnet"])
    photo, mask = _photo(), _mask()
    first = renderer.inpaint(photo, mask, PROMPT, seed=1, control_image=_edges(True))
    other = renderer.inpaint(photo, mask, PROMPT, seed=1, control_image=_edges(False))
    assert max_diff(first.image, other.image) > 5


# ---------------------------------------------------------------- FLUX

def test_flux_txt2img_with_lora_equals_reference_and_inpaint_runs(models, adapters):
    from diffusers import FluxPipeline

    from fitad.generate.config import RenderConfig

    renderer = Renderer(RenderConfig(base_model=models["flux"], steps=2, guidance=3.5, max_sequence_length=32))
    assert renderer.base_family == "flux" and renderer.size_multiple() == 16
    result = renderer.txt2img(PROMPT, width=64, height=64, seed=3, lora=str(adapters["flux"]), lora_scale=0.8)
    assert result.pipeline == "FluxPipeline" and result.lora["swap"] == "hot-slot" and result.family == "flux"

    pipe = FluxPipeline.from_pretrained(models["flux"])
    pipe.set_progress_bar_config(disable=True)
    load_lora_into_pipeline(pipe, adapters["flux"], 0.8)
    with torch.no_grad():
        images = pipe(PROMPT, num_inference_steps=2, guidance_scale=3.5, width=64, height=64, max_sequence_length=32,
                      output_type="np", generator=torch.Generator().manual_seed(3)).images
    assert max_diff(result.image, to_uint8(images)) <= TOL
    plain = renderer.txt2img(PROMPT, width=64, height=64, seed=3)
    assert max_diff(plain.image, result.image) > 5

    out = renderer.inpaint(_photo(64), _mask(64), PROMPT, seed=3, lora=str(adapters["flux"]))
    assert out.pipeline == "FluxInpaintPipeline" and out.image.shape == (64, 64, 3)
    assert out.lora["swap"] == "hot-slot"  # the inpaint pipeline shares the base's modules and adapter pool
    assert renderer.adapter_stats()["base"]["loaded"] == ["hot"]
    with pytest.raises(LoraLoadError, match="sd15"):
        renderer.txt2img(PROMPT, width=64, height=64, lora=str(adapters["a"]))


# ---------------------------------------------------------------- MLflow registry

@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("loras", artifact_location=(tmp_path / "mlflow" / "artifacts").as_uri())
    return mlflow, client, experiment


def _register(mlflow, client, experiment: str, lora_dir, name: str) -> str:
    """Log ``lora_dir`` as run artifacts and register that folder as a model version.

    ``mlflow.register_model('runs:/ID/lora', ...)`` is refused by MLflow 3.17 for a plain artifact folder
    ("Unable to find a logged_model with artifact_path lora"); the client's ``create_model_version`` with the
    artifact URI as source registers it.
    """
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(lora_dir), "lora")
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/lora", run_id=run.info.run_id)
    return str(version.version)


def test_mlflow_model_uri_and_alias_move(mlflow_store, make_renderer, adapters):
    mlflow, client, experiment = mlflow_store
    first = _register(mlflow, client, experiment, adapters["a"], "shop-lora")
    client.set_registered_model_alias("shop-lora", "approved", first)

    renderer = make_renderer()
    by_uri = renderer.txt2img(PROMPT, seed=9, lora="models:/shop-lora@approved")
    assert by_uri.lora["registry"] == {"name": "shop-lora", "version": first, "alias": "approved"}
    assert by_uri.lora["family"] == "sd15" and by_uri.lora["ref"] == "models:/shop-lora@approved"
    local = make_renderer().txt2img(PROMPT, seed=9, lora=str(adapters["a"]))
    assert max_diff(by_uri.image, local.image) <= TOL
    assert renderer.txt2img(PROMPT, seed=9, lora=f"models:/shop-lora/{first}").lora["swap"] == "hot-slot"

    second = _register(mlflow, client, experiment, adapters["b"], "shop-lora")
    assert second != first
    client.set_registered_model_alias("shop-lora", "approved", second)
    moved = renderer.txt2img(PROMPT, seed=9, lora="models:/shop-lora@approved")
    assert moved.lora["registry"]["version"] == second and moved.lora["swap"] == "hotswap"
    assert max_diff(moved.image, make_renderer().txt2img(PROMPT, seed=9, lora=str(adapters["b"])).image) <= TOL
    assert max_diff(moved.image, by_uri.image) > 5
    assert renderer.adapter_stats()["base"]["cpu_cached"] == 2  # two cache keys: one per version

    with pytest.raises(LoraLoadError, match="nope"):
        renderer.txt2img(PROMPT, lora="models:/shop-lora@nope")


def test_mlflow_pyfunc_logged_lora_resolves(mlflow_store, make_renderer, adapters):
    """A LoRA logged as artifacts of a pyfunc model (``mlflow.pyfunc.log_model``) is found inside the model folder."""
    mlflow, client, experiment = mlflow_store

    class Passthrough(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str]) -> list[str]:
            return model_input

    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="lora", python_model=Passthrough(), artifacts={"lora": str(adapters["c"])},
                                       registered_model_name="shop-pyfunc", pip_requirements=[])
    version = str(info.registered_model_version)
    result = make_renderer().txt2img(PROMPT, seed=9, lora=f"models:/shop-pyfunc/{version}")
    assert result.lora["registry"] == {"name": "shop-pyfunc", "version": version, "alias": ""}
    local = make_renderer().txt2img(PROMPT, seed=9, lora=str(adapters["c"]))
    assert max_diff(result.image, local.image) <= TOL


def test_a_half_loaded_adapter_is_removed(make_renderer, adapters, tmp_path, tiny_models_root):
    """An adapter whose UNet part loads and whose text-encoder part is refused leaves nothing behind."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    broken = zoo.build_tiny_lora(tmp_path / "broken", rank=4, seed=3, targets=("proj_in", "proj_out"),
                                 root=tiny_models_root)
    weights = broken / "pytorch_lora_weights.safetensors"
    with safe_open(str(weights), "pt") as fh:
        header = fh.metadata()
    state = load_file(str(weights))
    state["text_encoder.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = torch.randn(4, 999)  # wrong width
    state["text_encoder.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = torch.randn(999, 4)
    save_file(state, str(weights), metadata=header)

    renderer = make_renderer(clip_skip=1)
    first = renderer.txt2img(PROMPT, seed=2, lora=str(adapters["a"])).image
    with pytest.raises(LoraLoadError):
        renderer.txt2img(PROMPT, seed=2, lora=str(broken))
    assert renderer.adapter_stats()["base"]["loaded"] == ["hot"]
    assert np.array_equal(renderer.txt2img(PROMPT, seed=2, lora=str(adapters["a"])).image, first)


def test_a_lora_renders_with_the_clip_skip_it_was_trained_with(make_renderer, adapters, tmp_path):
    """The manifest's clip_skip wins over the renderer's default; a LoRA that records none gets the default."""
    import json
    import shutil

    recorded = tmp_path / "skip1"
    shutil.copytree(adapters["a"], recorded)
    manifest = json.loads((recorded / "fitad_lora.json").read_text())
    (recorded / "fitad_lora.json").write_text(json.dumps({**manifest, "clip_skip": 1}))

    default2 = make_renderer(clip_skip=2)
    result = default2.txt2img(PROMPT, seed=5, lora=str(recorded))
    assert result.lora["clip_skip"] == 1
    same = make_renderer(clip_skip=1).txt2img(PROMPT, seed=5, lora=str(adapters["a"]))
    assert np.array_equal(result.image, same.image)
    unrecorded = default2.txt2img(PROMPT, seed=5, lora=str(adapters["a"]))
    assert unrecorded.lora["clip_skip"] == 2 and not np.array_equal(unrecorded.image, result.image)
