"""Ad making and LoRA swapping (fitad.ads.make, fitad.generate); prints one JSON object.

Default (CPU or GPU), on the tiny models:

* **stages**: ``make_ad`` for every mode (txt2img, product, person, advanced, compose) in each format
  (instagram_square, instagram_story, facebook_link), with a tiny LoRA, a headline and copy; each mode is warmed up
  once, then the median over ``--repeats`` of each stage in ``metadata['timings']`` (load, prompt, segment,
  render, composite, overlay, copy; compose fits the photo inside its overlay stage) in ms. Photos are
  scikit-image's coffee cup (product) and astronaut (person).
* **swap**: activating an adapter that is already in the renderer's CPU cache (hot swap into the slot, and the
  named path that loads it under its own name and evicts another; plus a resident adapter that is only
  re-selected), against what a service without the pool does, ``StableDiffusionPipeline.from_pretrained`` +
  ``load_lora_into_pipeline``. Target: the hot swap is >= 20x faster than the reload.
* **rss**: process RSS (``/proc/self/statm``, after ``gc.collect()``) after 1 and after 100 swaps cycling 4
  adapters, for the hot-swap and the named path.

The tiny models make the reload cheap (a few MB of weights), so the tiny ratio understates what a real base
model gives (a hot swap copies only the adapter's tensors into the slot); ``--full-size`` (CUDA) repeats the swap comparison on
an SD1.5-size inpaint pipeline (random weights from the real configs, saved to a temp dir in half precision) and
measures 512 px inpainting: s/image and peak VRAM.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODES = ("txt2img", "product", "person", "advanced", "compose")
FORMATS = ("instagram_square", "instagram_story", "facebook_link")
TARGET_SWAP_SPEEDUP = 20.0
STAGES = ("headline_check", "load", "prompt", "segment", "render", "composite", "overlay", "copy")


def rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def median_ms(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ---------------------------------------------------------------- make_ad stages

def bench_stages(renderer: Any, lora: str, repeats: int, steps: int | None, modes: list[str],
                 formats: list[str]) -> dict:
    from skimage import data as photos

    from fitad.ads.config import AdConfig
    from fitad.ads.make import make_ad

    coffee, astronaut = photos.coffee(), photos.astronaut()
    inputs = {"txt2img": {}, "product": {"image": coffee}, "person": {"image": astronaut},
              "advanced": {"image": astronaut, "product_image": coffee}, "compose": {"image": coffee}}
    industry = {"person": "beauty_salon", "advanced": "beauty_salon"}

    def one(mode: str, fmt: str) -> dict:
        config = AdConfig(format=fmt, industry=industry.get(mode, "cafe"), steps=steps)
        return make_ad(mode, config, renderer, prompt="봄 카페 신메뉴", headline="봄 한정 딸기라떼",
                       subcopy="4월 30일까지 20% 할인", shop_name="봄날카페", seed=1,
                       lora=None if mode == "compose" else lora, **inputs[mode]).metadata

    out: dict[str, Any] = {}
    for mode in modes:
        start = time.perf_counter()
        one(mode, formats[0])  # warm-up: loads the inpaint pipeline, the segmenter, the face detector, fonts
        warmup_ms = round((time.perf_counter() - start) * 1000, 1)
        out[mode] = {"warmup_ms": warmup_ms}
        for fmt in formats:
            runs, totals = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                meta = one(mode, fmt)
                totals.append(time.perf_counter() - start)
                runs.append(meta)
            stages = {stage: round(statistics.median(m["timings"].get(stage, 0.0) for m in runs) * 1000, 2)
                      for stage in STAGES if any(stage in m["timings"] for m in runs)}
            extra = sorted({s for m in runs for s in m["timings"]} - set(STAGES))
            entry = {"stages_ms": stages, "total_ms": round(statistics.median(totals) * 1000, 2),
                     "size": runs[-1]["size"], "render_size": runs[-1].get("render_size")}
            if extra:
                entry["other_stages_ms"] = {s: round(statistics.median(m["timings"].get(s, 0.0) for m in runs)
                                                     * 1000, 2) for s in extra}
            kept = runs[-1].get("kept", {})
            if "product" in kept:
                entry["segmenter"] = kept["product"].get("segmenter")
            if "faces" in kept:
                entry["face_detector"] = kept["faces"].get("face_detector")
            out[mode][fmt] = entry
    return out


# ---------------------------------------------------------------- swap vs reload

def _activations(renderer: Any, kind: str, sources: list[Any], n: int) -> tuple[float, dict]:
    """Median ms of ``pool.activate`` cycling ``sources`` (all already seen once), and how they were made active."""
    _pipe, pool = renderer._pipe(kind)
    for source in sources:  # first loads: through the file loader into the CPU cache
        pool.activate(source, 1.0)
    pool.activate(sources[0], 1.0)
    pool.stats.clear()
    i = iter(range(1, 10**9))  # sources[0] is active: every timed call changes the adapter

    def swap() -> None:
        pool.activate(sources[next(i) % len(sources)], 1.0)
        _sync()

    ms = median_ms(swap, n)
    return ms, dict(pool.stats)


def bench_swap(base_dir: str, adapter_dirs: list[Path], n: int, reloads: int, pipeline_cls: Any = None,
               renderer_config: dict | None = None, kind: str = "txt2img") -> dict:
    """Activation from the CPU cache (hot swap, named load, resident) against a full pipeline reload + LoRA load."""
    import torch

    from fitad.generate.lora_source import resolve_adapter
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer
    from fitad.lora.load import load_lora_into_pipeline

    if pipeline_cls is None:
        from diffusers import StableDiffusionPipeline as pipeline_cls
    sources = [resolve_adapter(str(d)) for d in adapter_dirs]
    cfg = dict(base_model=base_dir, inpaint_model=None, steps=1, **(renderer_config or {}))
    paths = {
        "hotswap": (dict(hotswap=True), sources[:2]),
        "named_from_cpu_cache": (dict(hotswap=False, resident_adapters=1), sources[:2]),
        "resident": (dict(hotswap=False, resident_adapters=2), sources[:2]),
    }
    out: dict[str, Any] = {}
    for name, (overrides, srcs) in paths.items():
        renderer = Renderer(RenderConfig(**{**cfg, **overrides}))
        ms, how = _activations(renderer, kind, srcs, n)
        out[f"{name}_ms"] = ms
        out[f"{name}_how"] = how
        del renderer
        gc.collect()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32

    def reload() -> None:
        pipe = pipeline_cls.from_pretrained(base_dir, dtype=dtype, safety_checker=None,
                                            requires_safety_checker=False).to(device)
        pipe.set_progress_bar_config(disable=True)
        load_lora_into_pipeline(pipe, adapter_dirs[0], 1.0)
        _sync()
        del pipe

    reload()  # file-system cache warm
    out["reload_ms"] = median_ms(reload, reloads)
    for name in ("hotswap", "named_from_cpu_cache", "resident"):
        out[f"{name}_speedup"] = round(out["reload_ms"] / out[f"{name}_ms"], 1)
    out["ratio"] = out["hotswap_speedup"]
    out["target"] = f">= {TARGET_SWAP_SPEEDUP:g}x (hot swap vs reload)"
    out["target_met"] = out["ratio"] >= TARGET_SWAP_SPEEDUP
    return out


# ---------------------------------------------------------------- memory over 100 swaps

def bench_rss(base_dir: str, adapter_dirs: list[Path], swaps: int) -> dict:
    from fitad.generate.lora_source import resolve_adapter
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer

    sources = [resolve_adapter(str(d)) for d in adapter_dirs]
    out: dict[str, Any] = {}
    for name, overrides in (("hotswap", dict(hotswap=True)),
                            ("named", dict(hotswap=False, resident_adapters=2))):
        renderer = Renderer(RenderConfig(base_model=base_dir, inpaint_model=None, steps=1, **overrides))
        _pipe, pool = renderer._pipe("txt2img")
        renderer.txt2img("a cup of coffee", steps=1)  # allocator warm before the first reading
        before = rss_mb()
        pool.activate(sources[0], 1.0)
        after_1 = rss_mb()
        for i in range(1, swaps):
            pool.activate(sources[i % len(sources)], 1.0)
        after_n = rss_mb()
        out[name] = {"before_mb": before, "after_1_swap_mb": after_1, f"after_{swaps}_swaps_mb": after_n,
                     "growth_mb": round(after_n - after_1, 1), "adapters_loaded": len(pool.loaded_adapters()),
                     "activations": dict(pool.stats)}
        del renderer, pool, _pipe
        gc.collect()
    return out


# ---------------------------------------------------------------- SD1.5-size inpainting (CUDA)

def _load_train_bench() -> Any:
    spec = importlib.util.spec_from_file_location("_fitad_bench_train", Path(__file__).with_name("train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _full_size_inpaint_dir(out: Path, tiny_base: str, dtype: Any) -> Path:
    """An SD1.5-size inpainting pipeline (9-channel UNet, SD1.5 VAE, CLIP-L-size text encoder), random weights."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    shapes = _load_train_bench()
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(tiny_base, subfolder="tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(**{**shapes.SD15_UNET, "in_channels": 9})
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL(**shapes.SD15_VAE), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler.from_pretrained(tiny_base, subfolder="scheduler"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.to(dtype).save_pretrained(out, safe_serialization=True)
    return out


def _full_size_lora(out: Path, unet_dir: Path, rank: int, seed: int) -> Path:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(unet_dir, subfolder="unet", dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                        init_lora_weights=False)
    unet.add_adapter(config)
    state = {k: (v.detach() * 0.1).contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    out.mkdir(parents=True)
    StableDiffusionPipeline.save_lora_weights(str(out), unet_lora_layers=state,
                                              unet_lora_adapter_metadata=config.to_dict())
    info = {"family": "sd15", "base_model": "sd15-size-random", "adapter_type": "lora", "rank": rank,
            "alpha": float(rank), "target_modules": ["to_q", "to_k", "to_v", "to_out.0"],
            "text_encoder_lora": False, "trigger": "sks", "resolution": 512, "steps": 0,
            "dataset_hash": f"random-{seed}", "prediction_type": "epsilon"}
    (out / "fitad_lora.json").write_text(json.dumps(info), encoding="utf-8")
    return out


def bench_full_size(tiny_base: str, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer

    cuda = torch.cuda.is_available()
    dtype = torch.float16 if cuda else torch.float32
    size = args.full_size_px
    with tempfile.TemporaryDirectory(prefix="fitad-bench-ads-full-") as tmp:
        start = time.perf_counter()
        model_dir = _full_size_inpaint_dir(Path(tmp) / "sd15-inpaint", tiny_base, dtype)
        loras = [_full_size_lora(Path(tmp) / f"lora{i}", model_dir, args.full_size_rank, i) for i in range(2)]
        build_s = round(time.perf_counter() - start, 1)

        renderer = Renderer(RenderConfig(base_model=tiny_base, inpaint_model=str(model_dir),
                                         steps=args.full_size_steps, clip_skip=1))
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
        renderer.load("inpaint")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        renderer.inpaint(image, mask, "a product photo", seed=0, lora=str(loras[0]))  # warm-up
        times = []
        for i in range(args.full_size_images):
            _sync()
            start = time.perf_counter()
            renderer.inpaint(image, mask, "a product photo", seed=i + 1, lora=str(loras[i % 2]))
            _sync()
            times.append(time.perf_counter() - start)
        out = {"model": "sd15-size inpaint (random weights)", "px": size, "steps": args.full_size_steps,
               "dtype": str(dtype).removeprefix("torch."), "build_s": build_s,
               "s_per_image": round(statistics.median(times), 3), "images": len(times),
               "lora_rank": args.full_size_rank}
        if cuda:
            out["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        del renderer
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        out["swap"] = bench_swap(str(model_dir), loras, n=args.full_size_swaps, reloads=2,
                                 pipeline_cls=StableDiffusionInpaintPipeline, kind="txt2img")
    return out


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode x format (median reported)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: generate.steps, 20)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is stable on a shared CPU; tiny models gain nothing from more)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--swap-repeats", type=int, default=20, help="activations timed per swap path")
    parser.add_argument("--reloads", type=int, default=5, help="full pipeline reloads timed")
    parser.add_argument("--swaps", type=int, default=100, help="swaps for the RSS reading")
    parser.add_argument("--skip-stages", action="store_true", help="only the swap and memory parts")
    parser.add_argument("--full-size", action="store_true",
                        help="SD1.5-size inpainting and swap-vs-reload (CUDA; runs by default when CUDA is there)")
    parser.add_argument("--no-full-size", action="store_true", help="skip the SD1.5-size part even on CUDA")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="let --full-size run on the CPU to check the code path (timings meaningless)")
    parser.add_argument("--full-size-px", type=int, default=512)
    parser.add_argument("--full-size-steps", type=int, default=20)
    parser.add_argument("--full-size-images", type=int, default=3)
    parser.add_argument("--full-size-rank", type=int, default=32)
    parser.add_argument("--full-size-swaps", type=int, default=10)
    parser.add_argument("--models-root", default=None, help="where tiny models are cached (default $FITAD_HOME)")
    args = parser.parse_args(argv)

    import torch

    from fitad import zoo

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    started = time.perf_counter()
    base = str(zoo.ensure_tiny("tiny-sd15", args.models_root))
    inpaint = str(zoo.ensure_tiny("tiny-sd15-inpaint", args.models_root))
    report: dict[str, Any] = {"benchmark": "ads", "device": torch.cuda.get_device_name() if cuda else "cpu",
                              "threads": args.threads, "torch": torch.__version__, "cpu_count": os.cpu_count(),
                              "models": "tiny-sd15 + tiny-sd15-inpaint"}
    with tempfile.TemporaryDirectory(prefix="fitad-bench-ads-") as tmp:
        adapters = [zoo.build_tiny_lora(Path(tmp) / f"lora{i}", rank=rank, alpha=alpha, seed=i, root=args.models_root)
                    for i, (rank, alpha) in enumerate(((4, 4.0), (8, 2.0), (2, 6.0), (6, 6.0)))]
        if not args.skip_stages:
            from fitad.generate.config import RenderConfig
            from fitad.generate.renderer import Renderer

            renderer = Renderer(RenderConfig(base_model=base, inpaint_model=inpaint,
                                             **({"steps": args.steps} if args.steps else {})))
            report["steps"] = args.steps or renderer.config.steps
            report["repeats"] = args.repeats
            report["stages"] = bench_stages(renderer, str(adapters[0]), args.repeats, args.steps,
                                            args.modes.split(","), args.formats.split(","))
            del renderer
            gc.collect()
        report["swap"] = bench_swap(base, adapters, args.swap_repeats, args.reloads)
        report["rss"] = bench_rss(base, adapters, args.swaps)
    full = (args.full_size or cuda) and not args.no_full_size
    if full and (cuda or args.allow_cpu):
        report["full_size"] = bench_full_size(base, args)
    else:
        report["full_size"] = {"skipped": "SD1.5-size inpainting at 512 px needs CUDA (no GPU here); run on a GPU "
                               "machine, or pass --full-size --allow-cpu to check the code path"
                               if not cuda else "--no-full-size"}
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, ensure_ascii=False))
    sys.exit(0)
