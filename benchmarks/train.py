"""LoRA training speed and memory (fitad.train); prints one JSON object.

Default (CPU or GPU): tiny-sd15 at 64 px and 256 px, batch 2, 20 steps, with gradient checkpointing
on, off and ``auto`` (latents and text embeddings cached), every run in its own process so peak RSS
is per run. Reports steps/s per setting, what ``auto`` chose and why, and the slowdown checkpointing
costs. About 2-3 minutes on a 2-core CPU. ``--compare-cache`` adds the uncached runs and the caching
target: caching gives >= 1.5x the steps/s of the uncached loop.

``--full-size-unet`` (CUDA only): the same training loop on SD1.5-size models with random weights
built from the real configs (UNet block_out_channels 320/640/1280/1280, cross_attention_dim 768,
attention_head_dim 8, layers_per_block 2; the SD1.5 VAE; a 12-layer CLIP-L text encoder) at 512 px,
batch 1, gradient checkpointing on/off/auto and caching on/off; reports steps/s and peak VRAM.
Nothing is downloaded. Full-size VAE and text encoder matter: they are what caching saves, and the
tiny zoo models make them nearly free next to the UNet.

Steps/s leave out the first ``--warmup`` steps (allocator and kernel warm-up). On CUDA the loop syncs
the loss every ``log_every`` (10) steps, so whole logging windows are left out: at least ``--warmup``
steps (the report says how many).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_CACHE_SPEEDUP = 1.5
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=768, attention_head_dim=8)


def write_dataset(root: Path, resolution: int, n: int = 8) -> Path:
    """``n`` smooth random-colour images at ``resolution`` with distinct captions."""
    import numpy as np
    from PIL import Image

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    for i in range(n):
        a, b, c = rng.random(3)
        rgb = np.stack([(xx * a + yy * b) % 1, (yy * c + 0.3) % 1, (xx + yy * a) % 1], axis=-1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(images / f"bench{i}.png")
        (images / f"bench{i}.txt").write_text(f"fitadtok girl, picture {i}, colour {a:.2f}", encoding="utf-8")
    return root


def _full_size_recipe(config):
    """SDRecipe over randomly initialised SD1.5-size UNet, VAE and CLIP-L text encoder (no downloads)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from fitad.train.runtime import weight_dtype
    from fitad.train.sd_lora import SDRecipe

    class FullSizeUNetRecipe(SDRecipe):
        def load(self, base_path, accelerator):
            torch.manual_seed(0)
            tokenizer = CLIPTokenizer.from_pretrained(base_path, subfolder="tokenizer")
            # CLIP-L's shape; the tiny tokenizer's vocabulary only shrinks the embedding table.
            text_encoder = CLIPTextModel(CLIPTextConfig(
                vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
            dtype = weight_dtype(accelerator)
            self.setup(accelerator, tokenizer=tokenizer, text_encoder=text_encoder.to(dtype),
                       vae=AutoencoderKL(**SD15_VAE), unet=UNet2DConditionModel(**SD15_UNET).to(dtype),
                       noise_scheduler=DDPMScheduler.from_pretrained(base_path, subfolder="scheduler"))

    return FullSizeUNetRecipe(config)


def run_one(spec: dict) -> dict:
    """One training run in this process; returns its speed and memory."""
    import torch

    from fitad.train.config import SDLoraConfig
    from fitad.train.loop import train_lora
    from fitad.train.sd_lora import SDRecipe
    from fitad.zoo import ensure_tiny

    torch.set_num_threads(spec["threads"])
    base = str(ensure_tiny("tiny-sd15", spec.get("models_root")))
    config = SDLoraConfig(base_model=base, rank=spec["rank"], resolution=spec["resolution"],
                          batch_size=spec["batch_size"], steps=spec["steps"], checkpoint_every=0,
                          validation_every=0, cache_latents=spec["cache"], cache_text_embeddings=spec["cache"],
                          gradient_checkpointing=spec["gradient_checkpointing"])
    recipe = _full_size_recipe(config) if spec["full_size_unet"] else SDRecipe(config)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_lora(recipe, config, spec["dataset"], Path(tmp) / "out", show_progress=False)
        wall = time.perf_counter() - start
        metrics = [json.loads(line) for line in (Path(tmp) / "out" / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((Path(tmp) / "out" / "train_summary.json").read_text())
    # Each metrics line covers the steps since the previous one, at their mean step time.
    windows, previous = [], 0
    for m in metrics:
        windows.append((m["step"] - previous, m["step_time_s"]))
        previous = m["step"]
    excluded = 0
    while windows and excluded < spec["warmup"]:
        excluded += windows.pop(0)[0]
    n = sum(count for count, _ in windows)
    total = sum(count * mean for count, mean in windows)
    out = {
        "model": "sd15-full-size-unet" if spec["full_size_unet"] else "tiny-sd15",
        "resolution": spec["resolution"], "batch_size": spec["batch_size"], "steps": spec["steps"],
        "cache": spec["cache"], "gradient_checkpointing": spec["gradient_checkpointing"],
        "gradient_checkpointing_used": summary["gradient_checkpointing"],
        "gradient_checkpointing_reason": summary["gradient_checkpointing_reason"],
        "warmup_steps_excluded": excluded,
        "steps_per_s": round(n / total, 3) if total > 0 else None,
        "mean_step_time_s": round(total / n, 4) if n else None,
        "cache_time_s": round(summary["cache_time_s"], 3), "wall_time_s": round(wall, 2),
        "final_loss": round(result.final_loss, 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "mixed_precision": summary["mixed_precision"], "device": summary["device"],
    }
    if torch.cuda.is_available():
        out["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _spawn(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(spec["threads"])})
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark run {spec} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None, help="default 2 (tiny) / 1 (full size)")
    parser.add_argument("--resolutions", type=str, default=None, help="comma list; default 64,256 (tiny) / 512")
    parser.add_argument("--rank", type=int, default=None, help="default 8 (tiny) / 32 (full size)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per run (1 is stable on a shared CPU; tiny models gain nothing from more)")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of steps/s")
    parser.add_argument("--compare-cache", action="store_true",
                        help="also run without latent/text caching and report the caching speedup "
                             "(default with --full-size-unet)")
    parser.add_argument("--full-size-unet", action="store_true",
                        help="SD1.5-size models (random weights) at 512 px, batch 1 (CUDA only)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="let --full-size-unet run on CPU to check the code path (timings meaningless)")
    parser.add_argument("--models-root", default=None, help="where tiny models are cached (default $FITAD_HOME)")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if args.full_size_unet and not cuda and not args.allow_cpu:
        raise SystemExit("benchmarks/train.py --full-size-unet needs a CUDA GPU: it trains an 860M-parameter "
                         "SD1.5 UNet at 512 px and reports peak VRAM; no CUDA device is available here. "
                         "Run it on the GPU machine, or drop the flag for the tiny CPU benchmark.")
    full = args.full_size_unet
    resolutions = [int(r) for r in (args.resolutions or ("512" if full else "64,256")).split(",")]
    batch = args.batch_size or (1 if full else 2)
    rank = args.rank or (32 if full else 8)
    caches = (True, False) if (args.compare_cache or full) else (True,)
    settings = (True, False, "auto")
    combos = [(c, g) for c in caches for g in settings]

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in resolutions:
            dataset = write_dataset(Path(tmp) / f"data{resolution}", resolution)
            for cache, checkpointing in combos:
                results.append(_spawn({
                    "resolution": resolution, "batch_size": batch, "steps": args.steps, "rank": rank,
                    "cache": cache, "gradient_checkpointing": checkpointing, "threads": args.threads,
                    "warmup": args.warmup, "dataset": str(dataset), "full_size_unet": full,
                    "models_root": args.models_root}))

    def run(res, cache, gc):
        return next(r for r in results
                    if (r["resolution"], r["cache"], r["gradient_checkpointing"]) == (res, cache, gc))

    def name(gc):
        return "auto" if gc == "auto" else ("on" if gc else "off")

    report = {"benchmark": "train", "device": torch.cuda.get_device_name() if cuda else "cpu",
              "threads": args.threads, "torch": torch.__version__, "steps": args.steps,
              "warmup_steps_excluded": args.warmup, "results": results}
    checkpointing = {}
    for res in resolutions:
        per = {f"steps_per_s_{name(gc)}": run(res, True, gc)["steps_per_s"] for gc in settings}
        auto = run(res, True, "auto")
        per["auto_used"] = auto["gradient_checkpointing_used"]
        per["auto_reason"] = auto["gradient_checkpointing_reason"]
        per["on_vs_off_speed"] = round(per["steps_per_s_on"] / per["steps_per_s_off"], 2)
        checkpointing[str(res)] = per
    report["checkpointing"] = checkpointing
    if False in caches:
        speedups = {str(res): {f"checkpointing_{name(gc)}": round(run(res, True, gc)["steps_per_s"]
                                                                   / run(res, False, gc)["steps_per_s"], 2)
                               for gc in settings} for res in resolutions}
        worst = min(v for per_res in speedups.values() for v in per_res.values())
        report["cache_speedup"] = speedups
        report["target"] = {"cache_speedup_min": TARGET_CACHE_SPEEDUP, "worst": worst,
                            "met": worst >= TARGET_CACHE_SPEEDUP}
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(run_one(json.loads(sys.argv[2]))))
    else:
        print(json.dumps(main(), indent=None))
