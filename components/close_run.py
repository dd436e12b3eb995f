"""Exit handler: closes the run's MLflow runs when a step ended without a Python error (fitad.pipeline.steps)."""

from kfp import dsl

from fitad.pipeline import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def close_run(status: dsl.PipelineTaskFinalStatus, experiment: str, kfp_run_id: str):
    """A killed, evicted or timed-out pod never reaches its own error handling: its MLflow stage run and the
    pipeline run would stay RUNNING. They are marked FAILED here with the run's final state and message."""
    from fitad.pipeline.steps import close_step

    close_step(status.state, status.error_message, experiment, kfp_run_id)
