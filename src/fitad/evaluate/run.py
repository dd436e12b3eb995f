"""``evaluate_lora``: render a fixed prompt set without and with a LoRA and score the renders with CLIP.

For every prompt template (``{trigger}`` filled in) and every seed the base model renders twice through
:class:`fitad.generate.renderer.Renderer`, once without the adapter and once with it, from the same starting
noise. The scores (all cosines of unit CLIP embeddings):

* ``clip_t`` / ``clip_t_base``: render vs its prompt's text, with / without the LoRA (prompt follows);
* ``clip_i`` / ``clip_i_base``: render vs the training images (mean over references), with / without the LoRA
  (the subject is learned: ``clip_i_delta`` = ``clip_i - clip_i_base``);
* ``effect_size``: ``1 - cos`` between the pair's two renders, computed as ``|a - b|^2 / 2`` of the unit
  embeddings (the same number, exactly 0 for identical renders); ``pixel_change``: mean absolute pixel
  difference of the pair / 255.

Outputs in OUT_DIR (each written atomically, ``metrics.json`` last): ``renders/base|lora/p<i>_s<seed>.png``,
``grid.png`` (one row per prompt x seed, base | LoRA), ``scores.csv`` (the per-pair scores, for DVC plots),
``report.json`` and ``metrics.json`` (flat, for DVC ``metrics:``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from fitad.config import to_dict
from fitad.evaluate.clip_scores import ClipScorer, mean_cosine_to_set, pairwise_cosine, pixel_change
from fitad.evaluate.config import EvalConfig
from fitad.evaluate.errors import EvalError
from fitad.evaluate.images import comparison_grid, load_references, reference_paths, save_png
from fitad.fsutil import atomic_dir, atomic_write_json, atomic_write_text

METRICS_FILE, REPORT_FILE, GRID_FILE, RENDERS_DIR = "metrics.json", "report.json", "grid.png", "renders"
SCORES_FILE = "scores.csv"   # one row per prompt x seed (DVC plots)
SCORE_COLUMNS = ("prompt_index", "seed", "prompt", "clip_t", "clip_t_base", "clip_i", "clip_i_base", "effect_size",
                 "pixel_change")


@dataclasses.dataclass
class EvalResult:
    """What one evaluation measured and wrote."""

    out_dir: Path
    metrics: dict[str, float]
    images: list[dict[str, Any]]       # one row per (prompt, seed): file names and scores
    metrics_path: Path
    report_path: Path
    grid_path: Path
    seconds: float


def _resolve_adapter(lora: str | Path) -> Any:
    from fitad.generate.lora_source import resolve_adapter
    from fitad.lora.load import LoraLoadError

    try:
        return resolve_adapter(lora)
    except LoraLoadError as exc:
        raise _lora_error(str(lora), exc) from None


def _lora_error(ref: str, exc: Exception) -> EvalError:
    message = str(exc)
    return EvalError(f"cannot load the LoRA: {message if ref in message else f'{ref}: {message}'}")


def _make_renderer(config: EvalConfig, base_model: str, clip_skip: int | None, field: str) -> Any:
    from fitad import zoo
    from fitad.generate.config import RenderConfig
    from fitad.generate.renderer import Renderer, RenderError

    try:
        zoo.resolve_model(base_model)  # a local path that does not exist is reported here, under our key
    except FileNotFoundError as exc:
        raise EvalError(f"{field}: {exc}") from None
    # base renders use the clip skip the LoRA renders with, so a pair differs only by the adapter
    kwargs = {"clip_skip": clip_skip} if clip_skip else {}
    try:
        return Renderer(RenderConfig(base_model=base_model, inpaint_model=None, steps=config.steps,
                                     guidance=config.guidance, device=config.device,
                                     local_files_only=config.local_files_only, **kwargs))
    except RenderError as exc:
        raise EvalError(str(exc)) from None


def _render_all(renderer: Any, jobs: list[tuple[int, str, int]], source: Any, config: EvalConfig, size: int | None,
                show_progress: bool) -> tuple[list[Any], list[Any]]:
    """All base renders, then all LoRA renders (one adapter switch); RenderResult lists in ``jobs`` order."""
    from tqdm.auto import tqdm

    from fitad.generate.renderer import RenderError
    from fitad.lora.load import LoraLoadError

    out: dict[bool, list[Any]] = {False: [], True: []}
    with tqdm(total=2 * len(jobs), desc="evaluate", unit="img", disable=not show_progress) as bar:
        for with_lora in (False, True):
            for _, prompt, seed in jobs:
                try:
                    result = renderer.txt2img(prompt, width=size, height=size, steps=config.steps,
                                              guidance=config.guidance, seed=seed,
                                              lora=source if with_lora else None, lora_scale=config.lora_scale)
                except LoraLoadError as exc:
                    raise _lora_error(source.ref, exc) from None
                except RenderError as exc:
                    raise EvalError(f"rendering failed: {exc}") from None
                out[with_lora].append(result)
                bar.update(1)
    return out[False], out[True]


def _scores(scorer: ClipScorer, prompts: list[str], jobs: list[tuple[int, str, int]], base: list[np.ndarray],
            lora: list[np.ndarray], references: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-pair scores; base and LoRA renders are embedded in batches of the same layout."""
    ref_emb = scorer.embed_images(references)
    base_emb, lora_emb = scorer.embed_images(base), scorer.embed_images(lora)
    text_emb = scorer.embed_texts(prompts)[[i for i, _, _ in jobs]]
    return {"clip_t": pairwise_cosine(lora_emb, text_emb), "clip_t_base": pairwise_cosine(base_emb, text_emb),
            "clip_i": mean_cosine_to_set(lora_emb, ref_emb), "clip_i_base": mean_cosine_to_set(base_emb, ref_emb),
            "effect_size": 0.5 * np.sum((lora_emb - base_emb) ** 2, axis=1),
            "pixel_change": np.array([pixel_change(a, b) for a, b in zip(lora, base)])}


@dataclasses.dataclass
class _Plan:
    """What the inputs resolve to, checked before any model is loaded."""

    source: Any                  # fitad.generate.lora_source.AdapterSource
    trigger: str
    base_model: str
    base_field: str              # the config key a base model problem is reported under
    reference_paths: list[Path]


def _plan(config: EvalConfig, lora: str | Path, dataset_dir: str | Path, renderer: Any) -> _Plan:
    paths = reference_paths(dataset_dir, config.max_reference_images)
    source = _resolve_adapter(lora)
    trigger = config.trigger or source.meta.trigger
    if not trigger:
        raise EvalError(f"{source.ref}: the adapter records no trigger word; set evaluate.trigger")
    if renderer is not None:
        return _Plan(source, trigger, renderer.config.base_model, "generate.base_model", paths)
    if config.base_model:
        return _Plan(source, trigger, config.base_model, "evaluate.base_model", paths)
    if not source.meta.base_model:
        raise EvalError(f"{source.ref}: the adapter records no base model; set evaluate.base_model")
    return _Plan(source, trigger, source.meta.base_model,
                 f"evaluate.base_model (null: the adapter's {source.meta.base_model!r})", paths)


def _write_renders(out: Path, config: EvalConfig, jobs: list[tuple[int, str, int]], base: list[np.ndarray],
                   lora: list[np.ndarray], scores: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """``renders/base|lora/p<i>_s<seed>.png`` (the folder replaced whole) and one report row per pair."""
    rows: list[dict[str, Any]] = []
    with atomic_dir(out / RENDERS_DIR) as tmp:
        for k, (i, prompt, seed) in enumerate(jobs):
            name = f"p{i}_s{seed}.png"
            save_png(base[k], tmp / "base" / name)
            save_png(lora[k], tmp / "lora" / name)
            rows.append({"prompt_index": i, "template": config.prompts[i], "prompt": prompt, "seed": seed,
                         "base": f"{RENDERS_DIR}/base/{name}", "lora": f"{RENDERS_DIR}/lora/{name}",
                         **{key: float(values[k]) for key, values in scores.items()}})
    return rows


def _write_scores_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCORE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _metrics(scores: dict[str, np.ndarray], n_prompts: int, n_seeds: int, n_references: int) -> dict[str, float]:
    metrics: dict[str, float] = {key: float(np.mean(values)) for key, values in scores.items()}
    metrics["clip_t_delta"] = metrics["clip_t"] - metrics["clip_t_base"]
    metrics["clip_i_delta"] = metrics["clip_i"] - metrics["clip_i_base"]
    metrics.update(n_prompts=n_prompts, n_seeds=n_seeds, n_reference_images=n_references)
    return metrics


def evaluate_lora(config: EvalConfig, lora: str | Path, dataset_dir: str | Path, out_dir: str | Path,
                  tracker: Any = None, *, show_progress: bool = True, renderer: Any = None) -> EvalResult:
    """Evaluate adapter ``lora`` (a LORA_DIR, an exported ``.safetensors`` or ``models:/NAME@alias``) against the
    training images of ``dataset_dir``; write OUT_DIR and report to ``tracker`` (any
    :class:`fitad.tracking.Tracker`). An injected ``renderer`` is used as it is (its base model wins over
    ``config.base_model``). Raises :class:`EvalError` naming the folder, adapter or config key at fault.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    plan = _plan(config, lora, dataset_dir, renderer)
    source = plan.source
    references = load_references(plan.reference_paths)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scorer = ClipScorer(config.clip_model, device=config.device, local_files_only=config.local_files_only)
    timings["clip_load"] = time.perf_counter() - t0
    prompts = config.prompt_texts(plan.trigger)
    jobs = [(i, prompt, seed) for i, prompt in enumerate(prompts) for seed in config.seeds]
    if tracker is not None:
        tracker.log_params({**{f"evaluate.{k}": v for k, v in to_dict(config).items()}, "adapter": source.ref,
                            "adapter.path": str(source.path), "trigger": plan.trigger, "base_model": plan.base_model,
                            "clip_model.path": scorer.path})

    t0 = time.perf_counter()
    renderer = renderer or _make_renderer(config, plan.base_model, source.meta.clip_skip, plan.base_field)
    try:
        size = config.resolution or renderer.native_size()
    except (OSError, ValueError) as exc:
        raise EvalError(f"{plan.base_field}: {exc}") from None
    timings["base_load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    base_results, lora_results = _render_all(renderer, jobs, source, config, size, show_progress)
    timings["render"] = time.perf_counter() - t0
    base, loras = [r.image for r in base_results], [r.image for r in lora_results]
    t0 = time.perf_counter()
    scores = _scores(scorer, prompts, jobs, base, loras, references)
    timings["clip_score"] = time.perf_counter() - t0

    rows = _write_renders(out, config, jobs, base, loras, scores)
    grid_path = save_png(comparison_grid(list(zip(base, loras))), out / GRID_FILE)
    _write_scores_csv(out / SCORES_FILE, rows)
    metrics = _metrics(scores, len(prompts), len(config.seeds), len(references))
    timings["total"] = time.perf_counter() - started
    report = {"config": to_dict(config), "adapter": source.describe(), "trigger": plan.trigger,
              "base_model": plan.base_model, "family": renderer.family, "resolution": size,
              "clip_skip": {"base": renderer.config.clip_skip, "lora": (lora_results[0].lora or {}).get("clip_skip")},
              "device": renderer.device,
              "clip_model": {"name": config.clip_model, "path": scorer.path, "device": scorer.device},
              "dataset_dir": str(dataset_dir), "reference_images": [p.name for p in plan.reference_paths],
              "metrics": metrics, "images": rows, "grid": GRID_FILE,
              "timings": {k: round(v, 4) for k, v in timings.items()}}
    report_path = atomic_write_json(out / REPORT_FILE, report)
    metrics_path = atomic_write_json(out / METRICS_FILE, metrics)   # last: its presence means the run completed

    if tracker is not None:
        tracker.log_metrics(metrics, step=0)
        tracker.log_image(grid_path, "eval_grid.png")
        tracker.log_artifact(report_path)
    return EvalResult(out_dir=out, metrics=metrics, images=rows, metrics_path=metrics_path, report_path=report_path,
                      grid_path=grid_path, seconds=time.perf_counter() - started)
