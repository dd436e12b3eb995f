"""Fetch: the raw images a data URI names (synth:N, a mounted folder, s3://) -> a Dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from fitad.pipeline import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fetch_data(raw: Output[Dataset], metrics: Output[Metrics], data_uri: str, profile: str, experiment: str, data_version: str,
               prep_version: str):
    """Copy, download or synthesize the raw images (fitad.pipeline.data.fetch_images)."""
    from fitad.pipeline.steps import fetch_step, plain, write_metrics

    write_metrics(metrics, fetch_step(raw.path, plain(locals())))
