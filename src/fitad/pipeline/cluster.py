"""What the pipeline expects of the cluster it is submitted to; k8s/ creates these objects with these names.

Secrets are referenced by name and never committed (k8s/README.md says how to create them). The MLflow server
runs with ``--serve-artifacts``, so steps reach the artifact store through it and need no S3 keys of their own;
only the fetch step reads ``s3://`` data with the S3 keys.
"""

from __future__ import annotations

CACHE_PVC = "fitad-model-cache"      # base models, CLIP, rembg/EasyOCR weights: downloaded once per cluster
CACHE_MOUNT = "/cache"               # the image's HF_HOME and U2NET_HOME live under it

# Secret name -> {key in the Secret: environment variable in the step}
MLFLOW_SECRET = "fitad-mlflow-client"
S3_SECRET = "fitad-s3"
SECRET_ENV = {
    MLFLOW_SECRET: {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"},
}
FETCH_SECRET_ENV = {
    S3_SECRET: {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
                "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"},
}

# The GPU steps' pods (CUDA image): training, and evaluation (it renders with the base model and the LoRA).
# CPU and memory for data loading and the base model in host memory while it moves to the GPU.
TRAIN_RESOURCES = {"accelerator": "nvidia.com/gpu", "gpus": 1, "cpu": "4", "memory": "24G", "memory_limit": "48G"}
EVAL_RESOURCES = {"accelerator": "nvidia.com/gpu", "gpus": 1, "cpu": "2", "memory": "16G", "memory_limit": "32G"}

# Kubeflow labels each step's pod with its run's id; the steps read it as this variable
RUN_ID_ENV = "FITAD_KFP_RUN_ID"
RUN_ID_FIELD = "metadata.labels['pipeline/runid']"

# Where GPU pods may go: the same node label and taint the prod overlay's ad service uses (k8s/overlays/prod)
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# The image's user (Dockerfile: uid/gid 1000), stated on every step's pod so runAsNonRoot can be checked
RUN_AS = {"run_as_user": 1000, "run_as_group": 1000, "run_as_non_root": True}

SERVICE_ACCOUNT = "fitad-pipeline"   # the pipeline's pods run as this account (k8s/base: RBAC)
