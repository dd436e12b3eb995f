"""Subject crop: segment the figures and cut one square crop per figure (fitad.prep.crop_subjects)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from fitad.pipeline import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def crop_subjects(cleaned: Input[Dataset], crops: Output[Dataset], metrics: Output[Metrics], resolution: int,
                  profile: str, experiment: str, prep_version: str):
    """Square crops at the training resolution and a manifest with every rejected subject and why."""
    from fitad.pipeline.steps import crop_step, plain, write_metrics

    write_metrics(metrics, crop_step(cleaned.path, crops.path, plain(locals())))
