"""The family-independent LoRA training loop.

A model family (SD1.5, FLUX) supplies a :class:`Recipe`: how to load its models and attach the
adapter, encode images and captions, compute the loss of a batch, render validation images and
which pipeline class writes its LoRA file. :func:`train_lora` does everything else, identically for
every family: validation of inputs before any model is loaded, caching, the optimizer loop under
accelerate, NaN checks, checkpoints and resume, validation renders, metrics, the adapter output and
the run summary.

Caching lives in :mod:`fitad.train.encodings`, checkpoints and resume in :mod:`fitad.train.resume`; this
module is the loop itself.

Determinism: every random draw of a step (caption dropout, flips, noise, timesteps) comes from one
``torch.Generator`` whose state is checkpointed, and the batch order is a pure function of the step
(:class:`~fitad.train.data.BatchOrder`), so a resumed run replays the uninterrupted run's losses.
Latents are encoded with the VAE posterior *mean*, so cached and uncached runs see the same latents.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from fitad.fsutil import atomic_file, atomic_write_json, atomic_write_text
from fitad.config import ConfigError, to_dict
from fitad.train import adapters, checkpoint as ckpt
from fitad.train.config import LoraTrainConfig
from fitad.train.data import BatchOrder, TrainDataset, load_dataset
from fitad.train.encodings import Cond, Encodings
from fitad.train.resume import (Checkpoints, TrainingDivergedError, check_resume_compatible,  # noqa: F401
                                truncate_metrics)
from fitad.train.runtime import (backend_versions, check_backends, check_pipeline_family,
                                 count_saved_activation_bytes, load_error, make_accelerator, make_lr_scheduler,
                                 make_optimizer, peak_memory_mb, resolve_base_model, resolve_gradient_checkpointing,
                                 resolve_log_every, set_gradient_checkpointing)

CHECKPOINTS = "checkpoints"
VALIDATION = "validation"
METRICS = "metrics.jsonl"
SUMMARY = "train_summary.json"
LOSS_CSV = "loss.csv"  # step,loss,lr: the loss curve for `dvc plots`
LORA = "lora"
CAPTION_EXAMPLES = 5  # long captions listed by name in the summary and the tracker

log = logging.getLogger(__name__)


class Recipe(Protocol):
    """What a model family provides to :func:`train_lora`.

    Optional: ``collate_text(conds) -> Cond`` batches cached caption encodings (default: concatenate);
    ``caption_overflow(caption) -> (tokens, text past the window)`` with ``text_window`` and
    ``long_prompts`` lets the run report captions the text encoder cuts (:func:`caption_report`).
    """

    family: str
    pipeline_cls: Any
    prediction_type: str
    text_trainable: bool

    def load(self, base_path: str, accelerator: Any) -> None:
        """Load the frozen models, attach the adapter(s), place everything on the device."""

    def trainable_models(self) -> dict[str, torch.nn.Module]:
        """Pipeline component name → model carrying an adapter (e.g. {"unet": unet})."""

    def set_prepared(self, models: dict[str, torch.nn.Module]) -> None:
        """Use these accelerate-prepared models for the forward passes."""

    def encoding(self) -> contextlib.AbstractContextManager:
        """Context in which many encode_* calls run (FLUX keeps offloaded encoders on the device)."""

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, H, W) → normalized latents (no grad)."""

    def encode_text(self, captions: list[str]) -> Cond:
        """Captions → conditioning tensors with batch dim first (grad only if the text side trains)."""

    def loss(self, latents: torch.Tensor, cond: Cond, generator: torch.Generator) -> torch.Tensor:
        """Scalar training loss of one batch; all randomness from ``generator``."""

    def render(self, prompts: list[str], conds: list[Cond] | None, seed: int, steps: int,
               guidance: float, resolution: int) -> list:
        """Validation images (PIL) for ``prompts`` with fixed seeds."""


@dataclasses.dataclass
class TrainResult:
    """What one call of a training entry function did."""

    out_dir: Path
    adapter_dir: Path
    start_step: int
    steps: int
    losses: dict[int, float]
    final_loss: float | None
    steps_per_s: float
    peak_memory_mb: float
    memory_kind: str
    wall_time_s: float
    summary_path: Path


def caption_report(recipe: Recipe, dataset: TrainDataset) -> dict[str, Any] | None:
    """Captions longer than the recipe's text window (CLIP: 77 tokens), per image.

    ``truncated`` counts the captions the encoder cuts (all long ones unless the recipe encodes long
    prompts in chunks); ``examples`` lists the first few with their token count and the text past the
    window. None when the recipe has no fixed window to report on.
    """
    overflow = getattr(recipe, "caption_overflow", None)
    if overflow is None:
        return None
    long = []
    for example in dataset.examples:
        tokens, past = overflow(example.caption)
        if past:
            long.append({"image": example.image_path.name, "tokens": tokens, "past_window": past})
    chunked = bool(getattr(recipe, "long_prompts", False))
    return {"text_window": recipe.text_window, "long_prompts": chunked, "long_captions": len(long),
            "truncated": 0 if chunked else len(long), "examples": long[:CAPTION_EXAMPLES]}


def default_validation_prompts(config: LoraTrainConfig, dataset: TrainDataset, trigger: str | None) -> list[str]:
    if config.validation_prompts:
        return list(config.validation_prompts)
    return [dataset.examples[0].caption] + ([trigger] if trigger else [])


# ---------------------------------------------------------------- the trainer

class _Trainer:
    """State of one training run: caches, optimizer, RNG, outputs. Built by :func:`train_lora`."""

    def __init__(self, recipe: Recipe, config: LoraTrainConfig, dataset: TrainDataset, out_dir: Path,
                 tracker: Any, accelerator: Any) -> None:
        self.recipe = recipe
        self.config = config
        self.dataset = dataset
        self.out_dir = out_dir
        self.tracker = tracker
        self.accelerator = accelerator
        self.device = accelerator.device
        self.is_main = accelerator.is_main_process
        self.encodings = Encodings(recipe, config, dataset)
        self.generator = torch.Generator().manual_seed(config.seed + accelerator.process_index)
        self.checkpoints = Checkpoints(out_dir / CHECKPOINTS, config, recipe, dataset, accelerator, self.generator)
        self.order = BatchOrder(dataset.targets, config.batch_size, config.seed,
                                accelerator.num_processes, accelerator.process_index)
        self.caption_report: dict[str, Any] | None = None
        self.checkpointing: dict[str, Any] = {}  # what setup_checkpointing chose, and why
        self.log_every = resolve_log_every(config.log_every, self.device)

    # ---- batches
    def cache(self, validation_prompts: list[str]) -> float:
        """Encode every image (and flip) and every caption once, as configured; returns the seconds it took."""
        return self.encodings.fill(validation_prompts)

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, Cond]:
        return self.encodings.batch(indices, self.generator)

    # ---- optimisation
    def prepare(self) -> None:
        """Optimizer and LR schedule over the adapter weights, all wrapped by accelerate."""
        models = self.recipe.trainable_models()
        if self.accelerator.mixed_precision != "no":
            adapters.cast_trainable_to_fp32(models)
        self.params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
        optimizer = make_optimizer(self.config, self.params)
        lr_scheduler = make_lr_scheduler(self.config, optimizer, self.accelerator.num_processes)
        names = list(models)
        prepared = self.accelerator.prepare(*models.values(), optimizer, lr_scheduler)
        self.models = dict(zip(names, prepared[:len(names)]))
        self.optimizer, self.lr_scheduler = prepared[len(names)], prepared[len(names) + 1]
        self.recipe.set_prepared(self.models)

    def step(self, step: int) -> torch.Tensor:
        """One optimizer step (``gradient_accumulation`` micro-batches); returns its mean loss.

        The loss stays a device tensor: :meth:`flush` syncs a window of them at once and checks them.
        """
        cfg, accelerator = self.config, self.accelerator
        models = list(self.models.values())
        micro_losses = []
        for k in range(cfg.gradient_accumulation):
            with accelerator.accumulate(*models):  # text-encoder LoRA runs its forward in here too
                latents, cond = self.batch(self.order.batch((step - 1) * cfg.gradient_accumulation + k))
                loss = self.recipe.loss(latents, cond, self.generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.detach().float())
        step_loss = torch.stack(micro_losses).mean()
        if accelerator.num_processes > 1:
            step_loss = accelerator.reduce(step_loss.to(accelerator.device), reduction="mean")
        return step_loss

    def flush(self, pending: list[tuple[int, torch.Tensor]]) -> list[tuple[int, float]]:
        """The host sync of a logging window: its step losses as floats, and the NaN guard.

        A non-finite loss raises :class:`TrainingDivergedError` naming its step. The loop flushes
        before every checkpoint and validation render, so the "last good checkpoint" was written
        after losses that were all checked. (Across processes the losses are means, so every
        process sees the same value and stops together.)
        """
        if not pending:
            return []
        values = torch.stack([loss.float() for _, loss in pending]).tolist()
        for (step, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise TrainingDivergedError.at(step, f"loss became {value}", self.last_checkpoint,
                                               self.config.learning_rate)
        flushed = [(step, value) for (step, _), value in zip(pending, values)]
        pending.clear()
        return flushed

    def setup_checkpointing(self) -> tuple[bool, str]:
        """Settle ``gradient_checkpointing`` (``auto``: see :func:`resolve_gradient_checkpointing`) and apply it.

        The ``auto`` probe runs one micro-batch's forward without checkpointing and counts what it
        would save for backward (keeping none of it), with the training RNG streams put back after.
        """
        models = {name: self.accelerator.unwrap_model(m) for name, m in self.models.items()}

        def measure() -> int:
            for model in models.values():
                set_gradient_checkpointing(model, False)
                model.train()
            state = self.generator.get_state()
            devices = [self.device] if self.device.type == "cuda" else []
            resident = [p for m in models.values() for p in m.parameters()]
            self.recipe.set_prepared(models)  # plain modules: a forward without backward confuses DDP
            try:
                with torch.random.fork_rng(devices=devices), self.accelerator.autocast(), \
                        count_saved_activation_bytes(resident) as saved:
                    latents, cond = self.batch(self.order.batch(0))
                    self.recipe.loss(latents, cond, torch.Generator().manual_seed(0))
            finally:
                self.generator.set_state(state)
                self.recipe.set_prepared(self.models)
            return saved.bytes

        used, reason = resolve_gradient_checkpointing(self.config.gradient_checkpointing, self.device, measure)
        if self.accelerator.num_processes > 1:  # one choice for all: take it if any process needs it
            used = bool(self.accelerator.gather(torch.tensor([int(used)], device=self.device)).max())
        for model in models.values():
            set_gradient_checkpointing(model, used)
        log.info("gradient checkpointing %s: %s", "on" if used else "off", reason)
        self.checkpointing = {"gradient_checkpointing": used, "gradient_checkpointing_reason": reason}
        return used, reason

    # ---- checkpoints
    @property
    def last_checkpoint(self) -> Path | None:
        return self.checkpoints.last

    @property
    def steps_extended_from(self) -> int | None:
        return self.checkpoints.extended_from

    def rng_states(self) -> dict[str, Any]:
        return self.checkpoints.rng_states()

    def save_checkpoint(self, step: int, rng_states: dict[str, Any]) -> Path:
        return self.checkpoints.save(step, rng_states, self.optimizer, self.lr_scheduler)

    def restore(self, checkpoint: ckpt.Checkpoint) -> None:
        self.checkpoints.restore(checkpoint, self.optimizer, self.lr_scheduler)

    # ---- validation
    def validate(self, step: int, prompts: list[str]) -> list[Path]:
        cfg = self.config
        models = [self.accelerator.unwrap_model(m) for m in self.recipe.trainable_models().values()]
        conds = self.encodings.conds(prompts)
        devices = [self.device] if self.device.type == "cuda" else []
        # Rendering must not move the training RNG streams, or resuming would diverge.
        with torch.random.fork_rng(devices=devices), torch.no_grad(), self.accelerator.autocast():
            for model in models:
                model.eval()
            try:
                images = self.recipe.render(prompts, conds, cfg.validation_seed, cfg.validation_inference_steps,
                                            cfg.validation_guidance, cfg.resolution)
            finally:
                for model in models:
                    model.train()
        folder = self.out_dir / VALIDATION
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, image in enumerate(images):
            path = folder / f"step_{step:06d}_{i}.png"
            with atomic_file(path) as tmp:
                image.save(tmp)
            self.tracker.log_image(path, path.name, step=step, key=f"validation_{i}")
            paths.append(path)
        return paths

    # ---- outputs
    def start_outputs(self, start_step: int, params: dict[str, Any]) -> None:
        """Fresh run: clear an earlier run's outputs. Resume: drop metrics past the checkpoint."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics = self.out_dir / METRICS
        if start_step:
            truncate_metrics(metrics, start_step)
            for stale in ckpt.prune_stale_temp(self.out_dir / CHECKPOINTS):
                log.warning("resume: removed %s, left by a checkpoint write that was interrupted", stale)
        else:  # stale checkpoints of another run must never be resumed into this one
            metrics.unlink(missing_ok=True)
            for stale in (self.out_dir / CHECKPOINTS, self.out_dir / VALIDATION):
                if stale.exists():
                    log.warning("fresh run: removing %s of an earlier run (use --resume to continue it)", stale)
                    shutil.rmtree(stale)
        self.tracker.log_params(params)

    def log_step(self, step: int, loss: float, lr: float, step_time: float) -> None:
        peak, _ = peak_memory_mb(self.device)
        record = {"step": step, "loss": loss, "lr": lr, "step_time_s": step_time, "peak_memory_mb": peak}
        with open(self.out_dir / METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        self.tracker.log_metrics({k: v for k, v in record.items() if k != "step"}, step=step)

    def run(self, start_step: int, prompts: list[str], show_progress: bool,
            on_step: Callable[[int, float], None] | None) -> tuple[dict[int, float], list[float]]:
        """Steps ``start_step + 1 .. steps`` with logging, checkpoints and validation renders.

        The losses reach the host once per ``log_every`` window (:meth:`flush`), and always before a
        checkpoint or a validation render, so a GPU step does not wait for the previous one; an
        ``on_step`` callback needs every step's loss and so brings back a sync per step. A metrics
        line's ``step_time_s`` is the mean over the steps since the previous line.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        losses: dict[int, float] = {}
        step_times: list[float] = []
        pending: list[tuple[int, torch.Tensor]] = []
        logged_from = 0  # index into step_times of the first step since the last metrics line
        for model in self.models.values():
            model.train()
        with tqdm(total=cfg.steps, initial=start_step, desc=f"train {self.recipe.family}", unit="step",
                  disable=not (show_progress and self.is_main), dynamic_ncols=True) as bar:
            for step in range(start_step + 1, cfg.steps + 1):
                t0 = time.perf_counter()
                lr = self.lr_scheduler.get_last_lr()[0]  # the rate this step trains with
                pending.append((step, self.step(step)))
                is_last = step == cfg.steps
                save = bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or is_last
                render = bool(cfg.validation_every and (step % cfg.validation_every == 0 or is_last))
                log_now = step % self.log_every == 0 or is_last
                flushed = self.flush(pending) if (log_now or save or render or on_step is not None) else []
                step_times.append(time.perf_counter() - t0)  # with a flush: the wait for the queued steps
                bar.update(1)
                losses.update(flushed)
                if flushed:
                    bar.set_postfix(loss=f"{flushed[-1][1]:.4f}", s_per_step=f"{step_times[-1]:.2f}", refresh=False)
                if log_now:
                    window = step_times[logged_from:]
                    logged_from = len(step_times)
                    if self.is_main:
                        self.log_step(step, losses[step], lr, sum(window) / len(window))
                if save:
                    self.accelerator.wait_for_everyone()
                    states = self.rng_states()  # a collective call: every process takes part
                    if self.is_main:
                        self.save_checkpoint(step, states)
                if self.is_main and render:
                    self.validate(step, prompts)
                if on_step is not None:
                    on_step(step, losses[step])
        return losses, step_times

    def finish(self, *, start_step: int, losses: dict[int, float], step_times: list[float], cache_time: float,
               trigger: str | None, wall_start: float) -> TrainResult:
        """Write the adapter directory and the run summary; log them to the tracker."""
        cfg = self.config
        final_step = max(start_step, cfg.steps)
        final_loss = losses[max(losses)] if losses else None
        compute_time = sum(step_times)
        steps_per_s = len(step_times) / compute_time if compute_time > 0 else 0.0
        peak, memory_kind = peak_memory_mb(self.device)
        lora_dir = self.out_dir / LORA
        if self.is_main:
            unwrapped = {name: self.accelerator.unwrap_model(m) for name, m in self.recipe.trainable_models().items()}
            manifest = adapters.manifest(cfg, prediction_type=self.recipe.prediction_type,
                                         dataset_hash=self.dataset.sha256, steps=final_step, trigger=trigger,
                                         text_encoder_lora=self.recipe.text_trainable, dataset=self.dataset,
                                         accelerator=self.accelerator,
                                         started_at=time.time() - (time.perf_counter() - wall_start),
                                         gradient_checkpointing=self.checkpointing.get("gradient_checkpointing"))
            adapters.save_adapter(lora_dir, cfg, self.recipe.pipeline_cls, unwrapped, manifest)
            summary = {
                "status": "completed", "family": self.recipe.family, "base_model": cfg.base_model,
                "adapter_path": str(lora_dir), "adapter_type": cfg.adapter_kind,
                "start_step": start_step, "steps": final_step, "steps_this_run": len(step_times),
                "final_loss": final_loss, "steps_per_s": steps_per_s,
                "mean_step_time_s": compute_time / len(step_times) if step_times else None,
                "cache_time_s": cache_time, "peak_memory_mb": peak, "memory_kind": memory_kind,
                "wall_time_s": time.perf_counter() - wall_start,
                "dataset_hash": self.dataset.sha256, "dataset_size": len(self.dataset),
                "latents_cached": self.encodings.latents_cached, "text_cached": self.encodings.text_cached,
                "mixed_precision": self.accelerator.mixed_precision, "device": str(self.device),
                "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
                "steps_extended_from": self.steps_extended_from, "captions": self.caption_report,
                **self.checkpointing, "log_every": self.log_every,
            }
            summary_path = _write_summary(self.out_dir, summary)
            _write_loss_csv(self.out_dir)
            self.tracker.log_metrics({"steps_per_s": steps_per_s, "wall_time_s": summary["wall_time_s"],
                                      "cache_time_s": cache_time}, step=final_step)
            self.tracker.log_artifact(lora_dir, LORA)
            self.tracker.log_artifact(summary_path)
        return TrainResult(out_dir=self.out_dir, adapter_dir=lora_dir, start_step=start_step, steps=final_step,
                           losses=losses, final_loss=final_loss, steps_per_s=steps_per_s, peak_memory_mb=peak,
                           memory_kind=memory_kind, wall_time_s=time.perf_counter() - wall_start,
                           summary_path=self.out_dir / SUMMARY)


def train_lora(recipe: Recipe, config: LoraTrainConfig, dataset_dir: str | Path, out_dir: str | Path,
               tracker: Any = None, *, resume: bool = False, extend_steps: bool = False,
               show_progress: bool = True, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``recipe``'s adapter on the dataset and write the adapter directory under ``out_dir``.

    Inputs are validated (config backends, dataset, base model location, resume compatibility)
    before any model is loaded. ``on_step(step, loss)`` is called after each optimizer step (after
    that step's checkpoint); an exception it raises stops training like an interruption would.

    ``resume`` continues from the newest checkpoint and refuses any setting that changes what a step
    computes (the error lists each change). ``extend_steps`` lets a resumed run train to more steps
    than the checkpoint's run planned: the LR schedule is recomputed for the new total, so from the
    resume point on the learning rate differs from the original run's (except with a constant schedule).
    """
    from fitad.tracking import NullTracker

    wall_start = time.perf_counter()
    tracker = tracker if tracker is not None else NullTracker()
    out_dir = Path(out_dir)
    # ---- everything that can reject the run, before any model is loaded
    check_backends(config)
    dataset = load_dataset(dataset_dir, config.resolution, aspect_buckets=config.aspect_buckets,
                           allow_upscale=config.allow_upscale)
    base_path = resolve_base_model(config.base_model)
    check_pipeline_family(base_path, recipe.family)
    trigger = config.trigger or dataset.trigger
    if resume:  # a checkpoint stranded by an interrupted write is put back before the newest is chosen
        for stale in ckpt.prune_stale_temp(out_dir / CHECKPOINTS):
            log.warning("resume: removed %s, left by a checkpoint write that was interrupted", stale)
    resume_from = ckpt.latest_checkpoint(out_dir / CHECKPOINTS) if resume else None
    if resume and resume_from is None:
        log.warning("--resume: no checkpoint under %s; training starts at step 0", out_dir / CHECKPOINTS)
    checkpoint = ckpt.load_checkpoint(resume_from) if resume_from else None
    extended_from = None
    if checkpoint is not None:
        saved_hash = checkpoint.extra.get("dataset_hash")
        if saved_hash and saved_hash != dataset.sha256:
            raise ConfigError(f"the dataset in {dataset.root} changed since checkpoint {checkpoint.path} "
                              f"(hash {dataset.sha256[:12]} vs {saved_hash[:12]}); resuming would not continue "
                              f"the same run: start a new output directory instead")
        saved_version, loss_version = checkpoint.extra.get("loss_version", 1), getattr(recipe, "loss_version", 1)
        if saved_version != loss_version:
            raise ConfigError(f"checkpoint {checkpoint.path} was written by an older {recipe.family} loss (version "
                              f"{saved_version}, now {loss_version}): resuming would not continue the same run; "
                              f"start a new output directory instead")
        extended_from = check_resume_compatible(config, checkpoint.extra.get("config", {}), checkpoint.path,
                                                 start_step=checkpoint.step, extend_steps=extend_steps)

    # ---- models, caches, optimizer
    accelerator = make_accelerator(config)
    saved_precision = checkpoint.extra.get("mixed_precision") if checkpoint is not None else None
    if saved_precision and saved_precision != accelerator.mixed_precision:
        raise ConfigError(f"checkpoint {checkpoint.path} trained with mixed precision {saved_precision!r}; this "
                          f"machine resolves {config.SECTION}.mixed_precision={config.mixed_precision!r} to "
                          f"{accelerator.mixed_precision!r}: set it to {saved_precision!r} to resume")
    torch.manual_seed(config.seed)  # adapter initialisation
    try:
        recipe.load(base_path, accelerator)
    except OSError as exc:
        raise load_error(config.base_model, exc) from exc
    trainer = _Trainer(recipe, config, dataset, out_dir, tracker, accelerator)
    trainer.checkpoints.extended_from = extended_from
    trainer.caption_report = captions = caption_report(recipe, dataset)
    if captions and captions["long_captions"] and trainer.is_main:
        first = captions["examples"][0]
        log.warning("%d of %d captions exceed the %d-token text window (e.g. %s: %d tokens, past it: %r)%s",
                    captions["long_captions"], len(dataset), captions["text_window"], first["image"],
                    first["tokens"], first["past_window"],
                    "; long_prompts encodes them in chunks" if captions["long_prompts"]
                    else "; that text is cut: set long_prompts to encode it in 75-token chunks")
    prompts = default_validation_prompts(config, dataset, trigger)
    cache_time = trainer.cache(prompts)
    trainer.prepare()
    start_step = 0
    if checkpoint is not None:
        trainer.restore(checkpoint)
        start_step = checkpoint.step
    trainer.setup_checkpointing()

    # ---- the loop
    if trainer.is_main:
        trainer.start_outputs(start_step, {
            "family": recipe.family, **to_dict(config), "base_model_resolved": base_path,
            "prediction_type": recipe.prediction_type, "trigger": trigger,
            "dataset": {"dir": str(dataset.root), "hash": dataset.sha256, "size": len(dataset)},
            "backend": {**backend_versions(), "mixed_precision": accelerator.mixed_precision,
                        "device": str(accelerator.device),
                        "latents_cached": trainer.encodings.latents_cached,
                        "text_cached": trainer.encodings.text_cached},
            "resume_from": str(resume_from) if resume_from else "",
            "steps_extended_from": trainer.steps_extended_from,
            "gradient_checkpointing_used": trainer.checkpointing["gradient_checkpointing"],
            "gradient_checkpointing_reason": trainer.checkpointing["gradient_checkpointing_reason"],
            "log_every_used": trainer.log_every,
            "captions": None if captions is None else {
                **{k: v for k, v in captions.items() if k != "examples"},
                "examples": [e["image"] for e in captions["examples"]]},
        })
        if captions is not None:
            tracker.log_metrics({"captions_long": captions["long_captions"],
                                 "captions_truncated": captions["truncated"]}, step=start_step)
    try:
        losses, step_times = trainer.run(start_step, prompts, show_progress, on_step)
    except TrainingDivergedError as exc:
        if trainer.is_main:
            _write_summary(out_dir, {"status": "diverged", "error": str(exc),
                                     "last_checkpoint": str(trainer.last_checkpoint) if trainer.last_checkpoint
                                     else None})
        raise
    accelerator.wait_for_everyone()
    return trainer.finish(start_step=start_step, losses=losses, step_times=step_times, cache_time=cache_time,
                          trigger=trigger, wall_start=wall_start)


def _write_loss_csv(out_dir: Path) -> Path:
    """``loss.csv`` (step,loss,lr) from the run's metrics records: the loss curve ``dvc plots`` draws.

    Read back from metrics.jsonl so a resumed run's curve starts at step 1 too; a line that is not a
    record (half-written by a killed run) is skipped.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["step", "loss", "lr"])
    metrics = out_dir / METRICS
    lines = metrics.read_text(encoding="utf-8", errors="replace").splitlines() if metrics.is_file() else []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record and "loss" in record:
            writer.writerow([record["step"], record["loss"], record.get("lr", "")])
    return atomic_write_text(out_dir / LOSS_CSV, text.getvalue())


def _write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in summary.items()}
    path = out_dir / SUMMARY
    atomic_write_json(path, clean)
    return path
