"""The end-to-end job on the embedded defaults, small enough for a laptop CPU (``make demo``).

synthetic panels → prep (OCR cleanup, crop, captions) → LoRA training on tiny-sd15 → kohya export →
evaluation (CLIP-T / CLIP-I / effect size) → registration in MLflow with the gate → ``approved`` → one
render and two ads with the approved version loaded from the registry. With the MLflow tracker every
stage is a run nested under one pipeline run in the local store (``fitad mlflow ui`` shows it). Every
step calls the same entry function the CLI, DVC and Kubeflow use; only the sizes are shrunk.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

from fitad.config import SynthConfig, check_choice, check_range
from fitad.tracking import TRACKER_KINDS


TOTAL_STEPS = 10


@dataclasses.dataclass
class DemoConfig:
    """Sizes of the demo run; the defaults finish in a few minutes on 2 CPU cores."""

    panels: int = 6
    seed: int = 0
    trigger: str = "sks"
    class_word: str = "character"
    resolution: int = 128
    steps: int = 30
    rank: int = 8
    base_model: str = "tiny-sd15"
    tracker: str = "mlflow"
    experiment: str = "fitad-demo"

    def __post_init__(self) -> None:
        check_range("demo", "panels", self.panels, lo=1, hi=200)
        check_range("demo", "resolution", self.resolution, lo=64, hi=1024)
        check_range("demo", "steps", self.steps, lo=1)
        check_range("demo", "rank", self.rank, lo=1, hi=1024)
        check_choice("demo", "tracker", self.tracker, TRACKER_KINDS)


def run_demo(out_dir: str | Path, config: DemoConfig | None = None,
             say: Callable[[str], None] = print) -> dict:
    """Run every stage into ``out_dir`` and return (and write) a summary of what was done."""
    from fitad import zoo
    from fitad.lora.export import export_kohya
    from fitad.prep.config import PrepConfig
    from fitad.prep.run import log_prep_run, prepare
    from fitad.synth import synthesize
    from fitad.tracking.lineage import open_stage_run
    from fitad.train.config import SDLoraConfig
    from fitad.train.stage import run_training

    cfg = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"out_dir": str(out), "steps": {}}
    t0 = time.perf_counter()

    def step(name: str, started: float, **info) -> None:
        info["seconds"] = round(time.perf_counter() - started, 2)
        summary["steps"][name] = info
        say(f"[{len(summary['steps'])}/{TOTAL_STEPS}] {name}: " + ", ".join(f"{k}={v}" for k, v in info.items()))

    started = time.perf_counter()
    base_dir = zoo.resolve_model(cfg.base_model)
    step("tiny base model", started, model=cfg.base_model, path=base_dir)

    started = time.perf_counter()
    raw = out / "raw"
    panels = synthesize(SynthConfig(n=cfg.panels, seed=cfg.seed), raw, progress=False)
    step("synthetic panels", started, count=len(panels), folder=str(raw))

    started = time.perf_counter()
    dataset = out / "dataset"
    prep_config = PrepConfig(trigger=cfg.trigger, class_word=cfg.class_word, resolution=cfg.resolution)
    with open_stage_run(cfg.tracker, "prep", dataset, inputs=[raw], experiment=cfg.experiment) as run:
        report = prepare(prep_config, raw, dataset)
        log_prep_run(run, prep_config, report, dataset)
    totals = report.totals
    step("prep", started, inputs_ok=totals.get("ok"), images=totals.get("images_written"), failed=len(report.failed),
         backends=",".join(f"{k}:{v}" for used in report.backends.get("used", []) for k, v in sorted(used.items())),
         folder=str(dataset))

    started = time.perf_counter()
    train_cfg = SDLoraConfig(base_model=cfg.base_model, rank=cfg.rank, resolution=cfg.resolution,
                             steps=cfg.steps, batch_size=2, learning_rate=1e-3, checkpoint_every=10,
                             validation_every=cfg.steps, validation_inference_steps=4, seed=cfg.seed,
                             trigger=cfg.trigger)
    # nested under the pipeline run that prep opened; closed as FAILED (with the reason) if training raises
    result = run_training(train_cfg, "sd15", dataset, out / "train", tracker=cfg.tracker, experiment=cfg.experiment,
                          run_name="train")
    step("LoRA training", started, steps=result.steps, final_loss=round(result.final_loss or float("nan"), 4),
         steps_per_s=round(result.steps_per_s, 2), adapter=str(result.adapter_dir), tracker=cfg.tracker)

    started = time.perf_counter()
    exported = export_kohya(result.adapter_dir, out / f"{cfg.trigger}_lora.safetensors")
    step("kohya export", started, file=str(exported), kb=round(exported.stat().st_size / 1024, 1))

    started = time.perf_counter()
    # Render as the LoRA was trained: the clip skip recorded in the exported file (training's, A1111 convention).
    # One warm renderer for the evaluation, the sample and both ads: the base loads once, LoRAs swap from cache.
    from PIL import Image

    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer
    from fitad.lora.load import read_lora_meta

    clip_skip = read_lora_meta(exported).clip_skip or RenderConfig().clip_skip
    renderer = Renderer(RenderConfig(base_model=cfg.base_model, inpaint_model="tiny-sd15-inpaint", steps=8,
                                     clip_skip=clip_skip))
    evaluation = _evaluate(cfg, renderer, result.adapter_dir, dataset, out / "eval")
    step("evaluation", started, **{k: round(v, 4) for k, v in evaluation.metrics.items() if k in _SHOWN},
         grid=str(evaluation.grid_path))

    started = time.perf_counter()
    lora_ref = str(exported)
    if cfg.tracker == "mlflow":
        registration = _register(cfg, out, result.adapter_dir.parent, exported, dataset)
        gate = registration.gate
        if registration.approved:  # the ads below load what the service would deploy
            lora_ref = f"models:/{registration.name}@approved"
        step("register + gate", started, model=f"{registration.name} v{registration.version}",
             gate=gate.decision + (f" ({'; '.join(gate.reasons)})" if gate.reasons else ""),
             approved=registration.approved, lora=lora_ref)
        summary["registry"] = {"name": registration.name, "version": registration.version,
                               "approved": registration.approved, "tracking_uri": _tracking_uri()}
    else:
        step("register + gate", started, skipped=f"needs the mlflow tracker (tracker={cfg.tracker})")

    started = time.perf_counter()
    rendered = renderer.txt2img(f"{cfg.trigger} {cfg.class_word}, ad poster", width=cfg.resolution,
                                height=cfg.resolution, seed=cfg.seed, lora=lora_ref)
    sample = out / "sample.png"
    Image.fromarray(rendered.image).save(sample)
    step("render with the LoRA", started, image=str(sample), size=f"{rendered.width}x{rendered.height}",
         clip_skip=clip_skip, lora=lora_ref)

    # Ads from real photographs (scikit-image ships them): a product ad and a person ad with the trained LoRA.
    from skimage import data as photos

    from fitad.ads.config import AdConfig
    from fitad.ads.make import make_ad

    ads = out / "ads"
    for mode, photo, fmt, headline, subcopy in (
            ("product", photos.coffee(), "instagram_portrait", "봄 한정 딸기라떼", "4월 30일까지 20% 할인"),
            ("person", photos.astronaut(), "instagram_story", "새 시즌 헤어 스타일", "첫 방문 30% 할인")):
        started = time.perf_counter()
        industry = "cafe" if mode == "product" else "beauty_salon"
        result = make_ad(mode, AdConfig(format=fmt, industry=industry, work_side=cfg.resolution), renderer,
                         image=photo, prompt="봄 카페" if mode == "product" else "화사한 봄 코디", headline=headline,
                         subcopy=subcopy, shop_name="봄날" + ("카페" if mode == "product" else "헤어"),
                         seed=cfg.seed, lora=lora_ref)
        png, _json = result.save(ads / f"{mode}_{fmt}.png")
        kept = result.metadata["kept"]["product" if mode == "product" else "faces"]
        step(f"{mode} ad", started, image=str(png), size="x".join(map(str, result.metadata["size"])),
             kept_px=kept["kept_pixels"], contrast=round(result.metadata["overlay"]["contrast"], 2))

    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


_SHOWN = ("clip_t", "clip_i", "effect_size", "pixel_change")


def _evaluate(cfg: DemoConfig, renderer, lora_dir: Path, dataset: Path, out: Path):
    from fitad.evaluate.config import EvalConfig
    from fitad.evaluate.stage import run_evaluation

    config = EvalConfig(clip_model="tiny-clip", steps=4, prompts=["{trigger}", "{trigger} on an ad poster"],
                        seeds=[0, 1])
    return run_evaluation(config, lora_dir, dataset, out, tracker=cfg.tracker, experiment=cfg.experiment,
                          show_progress=False, renderer=renderer)


def _register(cfg: DemoConfig, out: Path, train_dir: Path, exported: Path, dataset: Path):
    """Register under fitad-<trigger> (the name the DVC pipeline and `fitad serve` use, so `make demo` then
    `make serve` serves it) through the embedded gate (the demo's models are the tiny ones, whatever profile
    params.yaml names)."""
    from fitad.tracking.config import GateConfig, RegistryConfig
    from fitad.tracking.register import register_lora

    registry = RegistryConfig(experiment=cfg.experiment)
    return register_lora(registry, GateConfig(), train_dir, out / "eval", out / "register",
                         kohya_file=exported, prep_dir=dataset)


def _tracking_uri() -> str:
    from fitad.tracking.store import default_tracking_uri

    return default_tracking_uri()
