"""Kubeflow components of the character-LoRA pipeline: one file per step, each a thin door to one function of
``fitad.pipeline.steps`` (parse inputs -> call fitad -> write outputs). All run in the project's one image
(``fitad.pipeline.IMAGE``; ``$FITAD_IMAGE`` at compile time names another). kfp does not install itself at run
time (the image has it), so a step starts with no network.

Each component takes the pipeline parameters its stage reads plus the Kubeflow run's id and name (tags on its
MLflow run); ``plain(locals())`` hands exactly those to the step.
"""

from fitad.pipeline import IMAGE

from components.caption_dataset import caption_dataset
from components.clean_text import clean_text
from components.close_run import close_run
from components.crop_subjects import crop_subjects
from components.evaluate_lora import evaluate_lora
from components.export_lora import export_lora
from components.fetch_data import fetch_data
from components.register_model import register_model
from components.train_lora import train_lora

__all__ = ["IMAGE", "caption_dataset", "clean_text", "close_run", "crop_subjects", "evaluate_lora", "export_lora", "fetch_data",
           "register_model", "train_lora"]
