"""Checkpoints of a run and resuming from them: what is saved and restored, and what may change in between.

:class:`Checkpoints` writes a step's adapter weights, optimizer and LR-schedule state, every process's RNG
streams and the fp16 loss scaler (refusing weights that went non-finite), and restores all of it.
:func:`check_resume_compatible` refuses a resume whose settings would change what the remaining steps compute;
:func:`truncate_metrics` drops metric lines past the checkpoint (and a line half-written by a crash).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from fitad.config import ConfigError, to_dict
from fitad.fsutil import atomic_write_text
from fitad.train import adapters, checkpoint as ckpt
from fitad.train.config import LoraTrainConfig

log = logging.getLogger(__name__)

# Settings that do not change what a training step computes: a resumed run may change them freely.
# Every other setting must equal the checkpoint's (``steps`` may grow with ``extend_steps``).
RESUME_FREE_KEYS = frozenset({
    "checkpoint_every", "keep_checkpoints", "log_every", "validation_every", "validation_prompts",
    "validation_seed", "validation_inference_steps", "validation_guidance", "trigger",
    "gradient_checkpointing", "cache_latents", "cache_text_embeddings", "offload_encoders"})

class TrainingDivergedError(RuntimeError):
    """The loss or the weights became NaN or infinite; the message names the step and the last good checkpoint."""

    @classmethod
    def at(cls, step: int, what: str, last_checkpoint: Path | None, learning_rate: float,
           detail: str = "") -> "TrainingDivergedError":
        where = (f"the last good checkpoint is {last_checkpoint}" if last_checkpoint
                 else "no checkpoint had been written yet")
        return cls(f"{what} at step {step}{f' ({detail})' if detail else ''}; training stopped, {where}. "
                   f"Lower learning_rate (now {learning_rate}) or use mixed_precision 'no'/'bf16'.")


def truncate_metrics(path: Path, last_step: int) -> None:
    """On resume, drop metric lines of steps after the checkpoint (they will be recomputed).

    A line that is not a JSON object (the last line half-written when the run was killed) is dropped
    with a warning instead of failing the resume.
    """
    if not path.is_file():
        return
    kept, broken = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            broken.append(lineno)
        elif record.get("step", 0) <= last_step:
            kept.append(line)
    if broken:
        log.warning("%s: dropped %d unreadable line(s) (line %s), left by a run interrupted mid-write",
                    path, len(broken), ", ".join(map(str, broken)))
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def field_defaults(config: LoraTrainConfig) -> dict[str, Any]:
    missing = dataclasses.MISSING
    return {f.name: f.default if f.default is not missing else f.default_factory()  # type: ignore[misc]
            for f in dataclasses.fields(config) if f.default is not missing or f.default_factory is not missing}


def check_resume_compatible(config: LoraTrainConfig, saved: dict[str, Any], path: Path, *, start_step: int = 0,
                             extend_steps: bool = False) -> int | None:
    """Refuse to resume with settings that change what the remaining steps compute.

    Every setting but :data:`RESUME_FREE_KEYS` must equal the checkpoint's (a setting the checkpoint
    predates counts as its default), or a resumed run would not reproduce the uninterrupted run's
    losses; the error lists each difference as ``checkpoint → now``. With ``extend_steps`` ``steps``
    may grow; the checkpoint's ``steps`` is then returned (else None).
    """
    s = config.SECTION
    current, defaults = to_dict(config), field_defaults(config)
    changes: list[str] = []
    for key, now in current.items():
        if key in RESUME_FREE_KEYS or key == "steps":
            continue
        before = saved.get(key, defaults.get(key))
        if before != now:
            changes.append(f"{s}.{key} {before!r} → {now!r}")
    saved_steps = saved.get("steps", config.steps)
    extended_from = None
    if saved_steps != config.steps:
        if extend_steps and config.steps > saved_steps:
            extended_from = saved_steps
        else:
            changes.append(f"{s}.steps {saved_steps!r} → {config.steps!r}")
    if not changes:
        return extended_from
    message = (f"cannot resume from {path}: {len(changes)} setting(s) differ from the checkpoint's "
               f"(checkpoint → now): {'; '.join(changes)}. A resumed run reproduces the uninterrupted run only "
               f"with the same settings: set them back, or start a new output directory.")
    if saved_steps != config.steps:
        message += (f" To train past the checkpoint's {saved_steps} steps pass --extend-steps (extend_steps=True; "
                    f"it only lengthens a run): the LR schedule is then recomputed for the new total, so from "
                    f"step {start_step + 1} on the learning rate differs from the original run's (unless "
                    f"{s}.lr_scheduler is 'constant').")
    raise ConfigError(message)



class Checkpoints:
    """The run's checkpoint folder: the newest good checkpoint, saving and restoring the training state."""

    def __init__(self, folder: Path, config: LoraTrainConfig, recipe: Any, dataset: Any, accelerator: Any,
                 generator: torch.Generator) -> None:
        self.folder = folder
        self.config = config
        self.recipe = recipe
        self.dataset = dataset
        self.accelerator = accelerator
        self.generator = generator
        self.last: Path | None = None
        self.extended_from: int | None = None  # resume with extend_steps: the checkpoint's steps

    def rng_states(self) -> dict[str, Any]:
        """Every process's RNG states (each draws its own noise) and the fp16 loss scaler's state.

        Called on all processes: with several, the states are gathered to the main process.
        """
        from accelerate.utils import gather_object

        own = ckpt.capture_rng(self.generator)
        per_process = gather_object([own]) if self.accelerator.num_processes > 1 else [own]
        state: dict[str, Any] = {"per_process": per_process}
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None:  # fp16: the dynamic loss scale decides which steps are skipped
            state["grad_scaler"] = scaler.state_dict()
        return state

    def save(self, step: int, rng_states: dict[str, Any], optimizer: Any, lr_scheduler: Any) -> Path:
        """Write step ``step``'s checkpoint (main process); refuses non-finite adapter weights."""
        trainable = {name: adapters.trainable_parameters(self.accelerator.unwrap_model(model))
                     for name, model in self.recipe.trainable_models().items()}
        # A finite loss vouches only for the weights before this step's update: check the weights
        # themselves, so a diverged update never becomes the "last good checkpoint".
        bad = next((f"{model}.{name}" for model, params in trainable.items() for name, t in params.items()
                    if not torch.isfinite(t).all()), None)
        if bad is not None:
            raise TrainingDivergedError.at(step, "adapter weights became non-finite", self.last,
                                           self.config.learning_rate, detail=bad)
        self.last = ckpt.save_checkpoint(
            self.folder, step, trainable, optimizer.state_dict(), lr_scheduler.state_dict(),
            rng_states,
            extra={"config": to_dict(self.config), "dataset_hash": self.dataset.sha256, "family": self.recipe.family,
                   "loss_version": getattr(self.recipe, "loss_version", 1),
                   "mixed_precision": str(self.accelerator.mixed_precision)},
            keep=self.config.keep_checkpoints)
        return self.last

    def restore(self, checkpoint: ckpt.Checkpoint, optimizer: Any, lr_scheduler: Any) -> None:
        """Adapter weights, optimizer, LR schedule, RNG streams and loss scaler from ``checkpoint``."""
        for name, model in self.recipe.trainable_models().items():
            model = self.accelerator.unwrap_model(model)
            params = adapters.trainable_parameters(model)
            saved = checkpoint.trainable.get(name, {})
            missing = sorted(set(params) - set(saved))
            if missing:
                raise ConfigError(f"checkpoint {checkpoint.path} lacks {len(missing)} trainable tensor(s) of "
                                  f"{name} (e.g. {missing[0]}); it was written with other adapter settings")
            with torch.no_grad():
                for key, param in params.items():
                    param.copy_(saved[key].to(param.device, param.dtype))
        optimizer.load_state_dict(checkpoint.optimizer)
        lr_scheduler.load_state_dict(checkpoint.lr_scheduler)
        if self.extended_from is not None:
            self._follow_extended_schedule(checkpoint.step, optimizer, lr_scheduler)
        per_process = checkpoint.rng["per_process"]
        index = self.accelerator.process_index
        if len(per_process) == self.accelerator.num_processes:
            ckpt.restore_rng(per_process[index], self.generator)
        else:  # another process count: exact replay is impossible, keep the streams distinct
            log.warning("resuming %s written by %d process(es) with %d: the noise sequence will differ from "
                        "an uninterrupted run", checkpoint.path, len(per_process), self.accelerator.num_processes)
            ckpt.restore_rng(per_process[0], self.generator)
            self.generator.manual_seed(self.config.seed + index + 7919 * checkpoint.step)
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and "grad_scaler" in checkpoint.rng:
            scaler.load_state_dict(checkpoint.rng["grad_scaler"])
        self.last = checkpoint.path

    def _follow_extended_schedule(self, step: int, optimizer: Any, lr_scheduler: Any) -> None:
        """After ``extend_steps``: train on with the schedule built for the new total.

        The checkpoint's optimizer holds the old schedule's rate for the next step (0 at the end of a
        decayed cosine/linear schedule); set it, and the scheduler's last rate, from the new schedule.
        """
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate wraps it
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if lambdas is not None:  # diffusers' schedules are LambdaLR
            rates = [base * fn(scheduler.last_epoch) for fn, base in zip(lambdas, scheduler.base_lrs)]
            for group, rate in zip(optimizer.param_groups, rates):
                group["lr"] = rate
            scheduler._last_lr = list(rates)
        log.warning("steps extended from %d to %d: the %s LR schedule is recomputed for %d steps, so from step %d "
                    "on the learning rate (now %.3g) differs from the original run's", self.extended_from,
                    self.config.steps, self.config.lr_scheduler, self.config.steps, step + 1,
                    lr_scheduler.get_last_lr()[0])
