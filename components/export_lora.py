"""Export: the trained adapter as one kohya/WebUI .safetensors file (fitad.lora.export.export_kohya)."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from fitad.pipeline import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_lora(model: Input[Model], kohya: Output[Model], config_version: str):
    """<trigger>_lora.safetensors for ComfyUI, A1111 and kohya sd-scripts users, logged beside the registered model."""
    from fitad.pipeline.steps import export_step

    kohya.metadata.update(export_step(model.path, kohya.path))
