"""The evaluation stage as every door runs it: ``run_evaluation(config, lora, dataset_dir, out_dir, ...)``.

It opens the stage's tracker (nested under the pipeline run found upstream, see :mod:`fitad.tracking.lineage`)
and evaluates inside it. ``fitad evaluate``, the DVC ``evaluate`` stage and the Kubeflow evaluate component
all call this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fitad.evaluate.config import EvalConfig
from fitad.evaluate.run import EvalResult, evaluate_lora


def run_evaluation(config: EvalConfig, lora: str | Path, dataset_dir: str | Path, out_dir: str | Path, *,
                   tracker: str = "mlflow", experiment: str = "fitad", run_name: str | None = None,
                   show_progress: bool = True, tags: Mapping[str, Any] | None = None,
                   pipeline_tags: Mapping[str, Any] | None = None, renderer: Any = None) -> EvalResult:
    """Score ``lora`` (a training output folder, an exported file or ``models:/NAME@alias``) against the
    training images of ``dataset_dir``; raises :class:`~fitad.evaluate.EvalError` for what the user must fix.
    ``renderer``: a warm one to reuse (the demo's), else one is built from the config."""
    from fitad.tracking.lineage import open_stage_run

    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    # a local LoRA is an input whose upstream record names the pipeline run; a registry URI is not a path
    inputs = [dataset_dir] + ([Path(lora)] if Path(str(lora)).exists() else [])
    run = open_stage_run(tracker, "evaluate", out_dir, inputs=inputs, data=inputs[1:] + [dataset_dir / "images"],
                         experiment=experiment, run_name=run_name or "evaluate",
                         tags={"fitad.clip_model": config.clip_model, "fitad.lora": str(lora), **(tags or {})},
                         pipeline_tags=pipeline_tags)
    with run:
        return evaluate_lora(config, lora, dataset_dir, out_dir, run, show_progress=show_progress,
                             renderer=renderer)
