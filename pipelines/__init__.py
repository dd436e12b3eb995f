"""The Kubeflow side of the character-LoRA pipeline: its definition, its compiled YAML and the door that
compiles, runs (kfp.local) and submits it. ``fitad pipeline ...`` checks the parameters and then calls the door
(``python -m pipelines``), so the fitad package itself never imports kfp."""
