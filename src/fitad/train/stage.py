"""The training stage as every door runs it: ``run_training(config, family, dataset_dir, out_dir, ...)``.

It opens the stage's tracker (an MLflow run nested under the pipeline run found upstream, see
:mod:`fitad.tracking.lineage`) and trains the family's adapter inside it, so a failure closes the run and the
pipeline run FAILED with the reason. ``fitad train``, the DVC ``train`` stage and the Kubeflow train component
all call this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fitad.train.config import LoraTrainConfig

FAMILIES = ("sd15", "flux")


def dataset_files(dataset_dir: Path) -> list[Path]:
    """What the stage reads from a prepared dataset (what dvc.lock records for it)."""
    return [dataset_dir / "images", dataset_dir / "metadata.jsonl"]


def run_training(config: LoraTrainConfig, family: str, dataset_dir: str | Path, out_dir: str | Path, *,
                 tracker: str = "mlflow", experiment: str = "fitad", run_name: str | None = None,
                 resume: bool = False, extend_steps: bool = False, show_progress: bool = True,
                 tags: Mapping[str, Any] | None = None, pipeline_tags: Mapping[str, Any] | None = None) -> Any:
    """Train ``family``'s adapter on ``dataset_dir`` into ``out_dir`` and return its ``TrainResult``.

    ``tracker``: mlflow | disk | none. ``tags`` go on the stage's run, ``pipeline_tags`` also on the pipeline
    run it opens or joins (a Kubeflow run's id and name). Raises the trainer's own errors (DatasetError,
    ModelNotFoundError, TrainingDivergedError) after the tracker has recorded them.
    """
    from fitad.tracking.lineage import open_stage_run

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if family == "flux":
        from fitad.train.flux_lora import train_flux_lora as train
    else:
        from fitad.train.sd_lora import train_sd_lora as train
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    run = open_stage_run(tracker, "train", out_dir, inputs=[dataset_dir], data=dataset_files(dataset_dir),
                         experiment=experiment, run_name=run_name or out_dir.name,
                         tags={"fitad.family": family, "fitad.base_model": config.base_model, **(tags or {})},
                         pipeline_tags=pipeline_tags, fresh=not resume)
    extra = {"extend_steps": True} if extend_steps else {}
    with run:
        return train(config, dataset_dir, out_dir, run, resume=resume, show_progress=show_progress, **extra)
