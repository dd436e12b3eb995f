"""LoRA adapters after training: export to the kohya/WebUI format (:mod:`.export`) and loading (:mod:`.load`)."""
