"""One function per step of the character-LoRA pipeline, as its Kubeflow component calls it.

A component hands over its artifact folders and its typed inputs (``given``: the pipeline parameters it takes,
plus the Kubeflow run's id and name); the step builds the stage's config from params.yaml and
:class:`~fitad.pipeline.params.PipelineParams`, opens the stage's MLflow run (nested under one pipeline run per
Kubeflow run and tagged with its id, see :mod:`fitad.tracking.lineage`), calls the stage function the CLI and
DVC call, and returns the numbers the component logs to its Metrics artifact. A stage that raises closes its
MLflow run and the pipeline run FAILED with the reason; the component then fails the Kubeflow run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from fitad.pipeline.cluster import RUN_ID_ENV
from fitad.pipeline.params import PipelineParams, profile_env

RUN_ID_TAG = "kfp.pipeline_run_id"
RUN_NAME_TAG = "kfp.pipeline_run_name"
SUCCEEDED = {"SUCCEEDED", "COMPLETE", "CACHED"}  # a run's final state as Kubeflow's backends spell success
_PARAM_NAMES = {f.name for f in dataclasses.fields(PipelineParams)}


class StepError(RuntimeError):
    """A step cannot hand anything usable to the next one (every input was refused, say)."""


@dataclasses.dataclass
class StepContext:
    params: PipelineParams
    given: set[str]              # the parameters this step was handed; params.yaml keeps the others
    links: dict[str, str]        # the Kubeflow run this step belongs to

    @classmethod
    def of(cls, given: Mapping[str, Any]) -> "StepContext":
        unknown = sorted(set(given) - _PARAM_NAMES - {"kfp_run_id", "kfp_run_name"})
        if unknown:
            raise TypeError(f"unknown step input(s) {unknown}")
        values = {k: v for k, v in given.items() if k in _PARAM_NAMES and v is not None}
        # register gets the run's id and name as inputs (it is never cached); the other steps, cached, read the
        # id from the environment where the cluster sets it (fitad.pipeline.cluster.RUN_ID_ENV)
        links = {RUN_ID_TAG: given.get("kfp_run_id") or os.environ.get(RUN_ID_ENV),
                 RUN_NAME_TAG: given.get("kfp_run_name")}
        return cls(PipelineParams(**values), set(values), {k: str(v) for k, v in links.items() if v})

    def config(self, stage: str) -> Any:
        return self.params.stage_configs(only=self.given)[stage]

    def stage_run(self, stage: str, out_dir: Path, inputs: list[Path], **kw: Any) -> Any:
        from fitad.tracking.lineage import open_stage_run

        return open_stage_run("mlflow", stage, out_dir, inputs=inputs, experiment=self.params.experiment,
                              pipeline_tags=self.links, **kw)


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """A component's ``locals()`` without its artifacts: the typed inputs it hands to its step."""
    return {k: v for k, v in values.items() if v is None or isinstance(v, (str, int, float, bool))}


def write_metrics(artifact: Any, numbers: Mapping[str, float]) -> None:
    """Log ``numbers`` to a Kubeflow Metrics artifact (the UI's table) and write them to its file too: an output
    with no file counts as missing, and kfp.local would never reuse the step's cached result."""
    import json

    for name, value in numbers.items():
        artifact.log_metric(name, value)
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps(dict(numbers), indent=1), encoding="utf-8")


def _numbers(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric entries of a totals/metrics dict, for a Kubeflow Metrics artifact."""
    return {f"{prefix}{k}": float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def fetch_step(out_dir: str, given: Mapping[str, Any]) -> dict[str, float]:
    from fitad.pipeline.data import fetch_images

    ctx = StepContext.of(given)
    out = Path(out_dir)
    with ctx.stage_run("fetch", out, [], tags={"fitad.data_uri": ctx.params.data_uri}) as run:
        with profile_env(ctx.params.profile):
            manifest = fetch_images(ctx.params.data_uri, out)
        run.log_metrics(_numbers(manifest), step=0)
    return _numbers(manifest)


def _prep_step(stage: str, function: str, in_dir: str, out_dir: str, given: Mapping[str, Any]) -> dict[str, float]:
    """clean-text, crop-subjects and caption: the fitad.prep stage function of that name, in its MLflow run."""
    from fitad.config import to_dict
    from fitad.prep import stages

    ctx = StepContext.of(given)
    config = ctx.config("prep")
    out = Path(out_dir)
    with ctx.stage_run(stage, out, [Path(in_dir)]) as run:
        report = getattr(stages, function)(config, in_dir, out)
        run.log_params(to_dict(config))
        totals = _numbers(report.totals)
        run.log_metrics(totals, step=0)
        if report.manifest_path and Path(report.manifest_path).is_file():
            run.log_artifact(Path(report.manifest_path), stage)
        if not report.totals.get("ok"):
            reasons = sorted({item.get("reason", "") for item in report.to_dict().get("items", [])} - {""})
            raise StepError(f"{stage}: no input gave a usable result ({report.totals.get('inputs', 0)} inputs); "
                            f"reasons: {'; '.join(reasons[:5]) or 'none recorded'}")
    return totals


def clean_text_step(in_dir: str, out_dir: str, given: Mapping[str, Any]) -> dict[str, float]:
    return _prep_step("clean-text", "clean_text", in_dir, out_dir, given)


def crop_step(in_dir: str, out_dir: str, given: Mapping[str, Any]) -> dict[str, float]:
    return _prep_step("crop-subjects", "crop_subjects", in_dir, out_dir, given)


def caption_step(in_dir: str, out_dir: str, given: Mapping[str, Any]) -> dict[str, float]:
    return _prep_step("caption", "caption_dataset", in_dir, out_dir, given)


def train_step(dataset_dir: str, out_dir: str, given: Mapping[str, Any]) -> dict[str, float]:
    from fitad.train.stage import run_training

    ctx = StepContext.of(given)
    with profile_env(ctx.params.profile):
        result = run_training(ctx.config("train"), ctx.params.family, dataset_dir, out_dir,
                              experiment=ctx.params.experiment, run_name="train", show_progress=False,
                              pipeline_tags=ctx.links)
    return {"steps": float(result.steps), "final_loss": float(result.final_loss or 0.0),
            "steps_per_s": float(result.steps_per_s), "peak_memory_mb": float(result.peak_memory_mb),
            "wall_time_s": float(result.wall_time_s)}


def export_step(train_dir: str, out_dir: str) -> dict[str, float]:
    """The trained adapter as one kohya/WebUI file, ``<trigger>_lora.safetensors`` in ``out_dir`` (what ComfyUI
    and A1111 users load)."""
    from fitad.lora.export import export_kohya
    from fitad.lora.files import read_lora_info

    lora_dir = Path(train_dir) / "lora"
    info = read_lora_info(lora_dir)
    name = f"{info.trigger}_lora" if info is not None and info.trigger else "lora"
    path = export_kohya(lora_dir, Path(out_dir) / f"{name}.safetensors")
    return {"kohya_kb": round(path.stat().st_size / 1024, 1)}


def kohya_file(folder: str) -> str | None:
    """The exported file in an export step's folder (None when there is none)."""
    found = sorted(Path(folder).glob("*.safetensors"))
    return str(found[0]) if found else None


def evaluate_step(train_dir: str, dataset_dir: str, out_dir: str, given: Mapping[str, Any]) -> dict[str, float]:
    from fitad.evaluate.stage import run_evaluation

    ctx = StepContext.of(given)
    with profile_env(ctx.params.profile):
        result = run_evaluation(ctx.config("evaluate"), Path(train_dir) / "lora", dataset_dir, out_dir,
                                experiment=ctx.params.experiment, show_progress=False, pipeline_tags=ctx.links)
    return _numbers(result.metrics)


def register_step(train_dir: str, eval_dir: str, out_dir: str, given: Mapping[str, Any], *,
                  kohya_dir: str | None = None, prep_dir: str | None = None) -> dict[str, float]:
    """Register the adapter (alias candidate), run the gate, move `approved` if it passes; ends the pipeline run."""
    from fitad.tracking.register import register_lora

    ctx = StepContext.of(given)
    result = register_lora(ctx.config("registry"), ctx.config("gate"), train_dir, eval_dir, out_dir,
                           kohya_file=kohya_file(kohya_dir) if kohya_dir else None, prep_dir=prep_dir,
                           version_tags=ctx.links)
    return {"version": float(result.version), "approved": float(result.approved),
            "gate_passed": float(result.gate.decision == "pass")}


def evaluation_html(eval_dir: str) -> str:
    """A page for the Kubeflow UI: the sample grid (base vs LoRA renders) and the metrics."""
    import base64
    import html
    import json

    folder = Path(eval_dir)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v:.4f}</td></tr>" if isinstance(v, float) else
                   f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in metrics.items())
    grid = folder / "grid.png"
    image = (f'<img alt="evaluation grid: each prompt and seed without and with the LoRA" '
             f'src="data:image/png;base64,{base64.b64encode(grid.read_bytes()).decode()}">') if grid.is_file() else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>fitad evaluation</title></head><body>"
            f"<h1>Evaluation</h1>{image}<table>{rows}</table></body></html>")


def close_step(state: str, error_message: str, experiment: str, kfp_run_id: str) -> int:
    """The exit handler's work: when the Kubeflow run did not succeed, every MLflow run of it still RUNNING (its
    pod was killed, evicted or timed out, so its own error handling never ran) is marked FAILED with the final
    state and message. Returns how many runs it closed; never raises (an exit handler must not fail the run)."""
    if state in SUCCEEDED or not kfp_run_id:
        return 0
    from fitad.tracking.lineage import FAILURE_TAG

    reason = (f"the Kubeflow run ended {state}: {error_message or 'no message'} (a step stopped without a "
              "Python error: killed, evicted, out of memory or timed out)")
    try:
        from mlflow.tracking import MlflowClient

        from fitad.tracking.store import default_tracking_uri

        client = MlflowClient(default_tracking_uri())
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return 0
        runs = client.search_runs([found.experiment_id], f"tags.`{RUN_ID_TAG}` = '{kfp_run_id}' and "
                                                         "attributes.status = 'RUNNING'")
        for run in runs:
            client.set_tag(run.info.run_id, FAILURE_TAG, reason[:5000])
            client.set_terminated(run.info.run_id, status="FAILED")
        return len(runs)
    except Exception as exc:  # noqa: BLE001 - report, do not fail the exit handler
        print(f"close_run: could not close the MLflow runs of {kfp_run_id}: {type(exc).__name__}: {exc}")
        return 0
