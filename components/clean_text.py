"""OCR text cleanup: detect text and inpaint it away (fitad.prep.clean_text)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from fitad.pipeline import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def clean_text(raw: Input[Dataset], cleaned: Output[Dataset], metrics: Output[Metrics], text_box_threshold: float,
               profile: str, experiment: str, prep_version: str):
    """Cleaned images, the text masks and a manifest of the boxes found per image."""
    from fitad.pipeline.steps import clean_text_step, plain, write_metrics

    write_metrics(metrics, clean_text_step(raw.path, cleaned.path, plain(locals())))
