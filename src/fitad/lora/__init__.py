"""LoRA adapters after training.

:mod:`.format` (file and key names, alpha rules), :mod:`.files` (reading ``LORA_DIR`` and safetensors files),
:mod:`.convert` (state-dict converters), :mod:`.metadata` (``ss_*``/``sshs_*``/``modelspec.*`` header keys),
:mod:`.export` (``fitad export``) and :mod:`.load` (loading into a pipeline, reading what a file says about itself).
"""
