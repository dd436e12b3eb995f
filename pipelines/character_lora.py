"""The character-LoRA pipeline: fetch -> clean text -> crop subjects -> caption -> train -> export -> evaluate
-> register. Parameters, defaults and checks: fitad.pipeline.params.PipelineParams ("": params.yaml's value).

``build(cluster=True)`` is what gets compiled and submitted: train and evaluate ask for a GPU, the model steps mount
the model-cache volume, every step gets the MLflow and S3 credentials from Secrets (kfp-kubernetes). A local
run (``build(cluster=False)``, kfp.local) runs the same steps without those.
"""

from kfp import dsl, kubernetes

from components import (caption_dataset, clean_text, close_run, crop_subjects, evaluate_lora, export_lora,
                        fetch_data, register_model, train_lora)
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


def _chain(p: dict) -> dict:
    """The eight steps and the artifacts between them; ``p``: the pipeline's parameters."""
    # no run id among the cached steps' inputs (every run would miss); the versions make them miss when the
    # data, the code or the settings changed (fitad.pipeline.fingerprint)
    prep = dict(profile=p["profile"], experiment=p["experiment"], prep_version=p["prep_version"])
    run = dict(profile=p["profile"], experiment=p["experiment"], config_version=p["config_version"])
    t = {"fetch": fetch_data(data_uri=p["data_uri"], data_version=p["data_version"], **prep)}
    t["clean"] = clean_text(raw=t["fetch"].outputs["raw"], text_box_threshold=p["text_box_threshold"], **prep)
    t["crop"] = crop_subjects(cleaned=t["clean"].outputs["cleaned"], resolution=p["resolution"], **prep)
    t["caption"] = caption_dataset(crops=t["crop"].outputs["crops"], trigger=p["trigger"], class_word=p["class_word"],
                                   captioner=p["captioner"], **prep)
    dataset = t["caption"].outputs["dataset"]
    t["train"] = train_lora(dataset=dataset, **{k: p[k] for k in ("trigger", "family", "base_model", "rank", "steps",
                                                                 "resolution", "learning_rate")}, **run)
    model = t["train"].outputs["model"]
    t["export"] = export_lora(model=model, config_version=p["config_version"])
    t["evaluate"] = evaluate_lora(model=model, dataset=dataset, **run)
    t["register"] = register_model(model=model, kohya=t["export"].outputs["kohya"], dataset=dataset,
                                   evaluation=t["evaluate"].outputs["evaluation"], model_name=p["model_name"],
                                   min_clip_t=p["min_clip_t"], min_clip_i=p["min_clip_i"], profile=p["profile"],
                                   experiment=p["experiment"], kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                   kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
    for name, task in t.items():
        task.set_display_name(name)
        task.set_caching_options(name != "register")  # a re-run starts at the failed step; register never skipped
    return t


def _for_cluster(t: dict, close: dsl.PipelineTask, gpu: bool) -> None:
    for task, need in ((t["train"], TRAIN_RESOURCES), (t["evaluate"], EVAL_RESOURCES)):
        task.set_cpu_request(need["cpu"]).set_memory_request(need["memory"]).set_memory_limit(need["memory_limit"])
        _on_gpu(task, need) if gpu else task.set_container_image(IMAGE)
    _on_cluster(t["fetch"], secrets={**SECRET_ENV, **FETCH_SECRET_ENV})
    for name in ("clean", "crop", "caption", "train", "evaluate"):  # they load models: the shared model cache
        _on_cluster(t[name], cache=True)
    _on_cluster(t["register"])
    _on_cluster(close)
    _on_cluster(t["export"], secrets={})  # it only reads and writes artifacts


def build(cluster: bool = True, gpu: bool = True):
    """The pipeline; ``cluster``: with the kubernetes settings; ``gpu``: train and evaluate on GPU nodes in the
    CUDA image (``gpu=False`` for a CPU-only cluster, e.g. the dev overlay on a laptop)."""
    @dsl.pipeline(name=PIPELINE_NAME, description="Train a character LoRA from a few images, evaluate it and "
                                                  "register it in MLflow (approved when it passes the gate).")
    def character_lora(data_uri: str = "synth:8", trigger: str = "sks", class_word: str = "", family: str = "sd15",
                       base_model: str = "", rank: int = 8, steps: int = 30, resolution: int = 128,
                       learning_rate: float = 1e-3, captioner: str = "template", text_box_threshold: float = 0.4,
                       min_clip_t: float = 0.0, min_clip_i: float = 0.5, model_name: str = "",
                       experiment: str = "fitad", profile: str = "", data_version: str = "",
                       prep_version: str = "", config_version: str = ""):
        params = dict(locals())
        # runs even when a pod is killed (OOM, eviction, timeout): its MLflow runs get FAILED and the reason
        close = close_run(experiment=experiment, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        close.set_display_name("close MLflow runs").set_caching_options(False)
        with dsl.ExitHandler(close, name="character-lora"):
            tasks = _chain(params)
        if cluster:
            _for_cluster(tasks, close, gpu)

    return character_lora


character_lora = build(cluster=True)
