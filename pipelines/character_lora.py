"""The character-LoRA pipeline: fetch -> clean text -> crop subjects -> caption -> train -> export -> evaluate
-> register. Parameters, defaults and checks: fitad.pipeline.params.PipelineParams ("": params.yaml's value).

``build(cluster=True)`` is what gets compiled and submitted: train and evaluate ask for a GPU, the model steps mount
the model-cache volume, every step gets the MLflow and S3 credentials from Secrets (kfp-kubernetes). A local
run (``build(cluster=False)``, kfp.local) runs the same steps without those.
"""

from kfp import dsl, kubernetes

from components import (caption_dataset, clean_text, crop_subjects, evaluate_lora, export_lora, fetch_data,
                        register_model, train_lora)
from fitad.pipeline import IMAGE, PIPELINE_NAME
from fitad.pipeline.cluster import (CACHE_MOUNT, CACHE_PVC, EVAL_RESOURCES, FETCH_SECRET_ENV, GPU_NODE_SELECTOR,
                                    GPU_TOLERATION, RUN_AS, RUN_ID_ENV, RUN_ID_FIELD, SECRET_ENV, TRAIN_RESOURCES)


def _on_cluster(task: dsl.PipelineTask, *, cache: bool = False, secrets: dict = SECRET_ENV) -> None:
    # the run's id from the pod's label (downward API): tags the step's MLflow run without entering the cache key
    kubernetes.use_field_path_as_env(task, env_name=RUN_ID_ENV, field_path=RUN_ID_FIELD)
    kubernetes.set_security_context(task, **RUN_AS)
    for secret, keys in secrets.items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=keys)
    if cache:
        kubernetes.mount_pvc(task, pvc_name=CACHE_PVC, mount_path=CACHE_MOUNT)


def _on_gpu(task: dsl.PipelineTask, need: dict) -> None:
    task.set_accelerator_type(need["accelerator"]).set_accelerator_limit(need["gpus"])
    for key, value in GPU_NODE_SELECTOR.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(task, **GPU_TOLERATION)


def build(cluster: bool = True, gpu: bool = True):
    """The pipeline; ``cluster``: with the kubernetes settings; ``gpu``: train and evaluate on GPU nodes in the
    CUDA image (``gpu=False`` for a CPU-only cluster, e.g. the dev overlay on a laptop)."""
    @dsl.pipeline(name=PIPELINE_NAME, description="Train a character LoRA from a few images, evaluate it and "
                                                  "register it in MLflow (approved when it passes the gate).")
    def character_lora(data_uri: str = "synth:8", trigger: str = "sks", class_word: str = "", family: str = "sd15",
                       base_model: str = "", rank: int = 8, steps: int = 30, resolution: int = 128,
                       learning_rate: float = 1e-3, captioner: str = "template", text_box_threshold: float = 0.6,
                       min_clip_t: float = 0.0, min_clip_i: float = 0.5, model_name: str = "",
                       experiment: str = "fitad", profile: str = "", data_version: str = "",
                       config_version: str = ""):
        # no run id among the cached steps' inputs (every run would miss); the versions make them miss when the
        # data, the code or the settings changed (fitad.pipeline.fingerprint)
        run = dict(profile=profile, experiment=experiment, config_version=config_version)
        fetch = fetch_data(data_uri=data_uri, data_version=data_version, **run).set_display_name("fetch images")
        clean = clean_text(raw=fetch.outputs["raw"], text_box_threshold=text_box_threshold, **run)
        crop = crop_subjects(cleaned=clean.outputs["cleaned"], resolution=resolution, **run)
        caption = caption_dataset(crops=crop.outputs["crops"], trigger=trigger, class_word=class_word,
                                  captioner=captioner, **run)
        train = train_lora(dataset=caption.outputs["dataset"], trigger=trigger, family=family, base_model=base_model,
                           rank=rank, steps=steps, resolution=resolution, learning_rate=learning_rate, **run)
        export = export_lora(model=train.outputs["model"], config_version=config_version)
        evaluate = evaluate_lora(model=train.outputs["model"], dataset=caption.outputs["dataset"], **run)
        register = register_model(model=train.outputs["model"], kohya=export.outputs["kohya"],
                                  evaluation=evaluate.outputs["evaluation"], dataset=caption.outputs["dataset"],
                                  model_name=model_name, min_clip_t=min_clip_t, min_clip_i=min_clip_i,
                                  kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                  kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, profile=profile,
                                  experiment=experiment)
        for task, label in ((clean, "clean text"), (crop, "crop subjects"), (caption, "caption"), (train, "train LoRA"),
                            (export, "export kohya"), (evaluate, "evaluate"), (register, "register")):
            task.set_display_name(label)
        for task in (fetch, clean, crop, caption, train, export, evaluate):
            task.set_caching_options(True)  # a re-run after a failure starts at the failed step
        register.set_caching_options(False)  # it changes the registry: never skipped
        if cluster:
            for task, need in ((train, TRAIN_RESOURCES), (evaluate, EVAL_RESOURCES)):
                task.set_cpu_request(need["cpu"]).set_memory_request(need["memory"]).set_memory_limit(
                    need["memory_limit"])
                if gpu:
                    _on_gpu(task, need)
                else:
                    task.set_container_image(IMAGE)
            _on_cluster(fetch, secrets={**SECRET_ENV, **FETCH_SECRET_ENV})
            for task in (clean, crop, caption, train, evaluate):  # they load models: the shared model cache
                _on_cluster(task, cache=True)
            _on_cluster(register)
            _on_cluster(export, secrets={})  # it only reads and writes artifacts

    return character_lora


character_lora = build(cluster=True)
