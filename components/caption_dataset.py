"""Captioning: trigger word (+ class word, + BLIP) per crop -> the training dataset (fitad.prep.caption_dataset).

A step of its own so a run can re-caption (template -> BLIP) while the OCR and crop steps come from the cache.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from fitad.pipeline import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def caption_dataset(crops: Input[Dataset], dataset: Output[Dataset], metrics: Output[Metrics], trigger: str,
                    class_word: str, captioner: str, profile: str, experiment: str,
                    prep_version: str):
    """images/*.png + .txt, metadata.jsonl and report.json: what `fitad train` reads."""
    from fitad.pipeline.steps import caption_step, plain, write_metrics

    write_metrics(metrics, caption_step(crops.path, dataset.path, plain(locals())))
