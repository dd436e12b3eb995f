"""The compiled pipeline (pipelines/character_lora.yaml) against the code, the parameters and the cluster's names.

The YAML is read as Kubeflow reads it (pipeline spec + kubernetes platform spec); expectations come from the
files the cluster side is built from (Dockerfile, k8s/), not from the pipeline code.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fitad.pipeline import GPU_IMAGE, IMAGE, IMAGE_NAME
from fitad.pipeline.params import PipelineParams, resolve_params

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "character_lora.yaml"
KFP_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}
MODEL_STEPS = {"clean-text", "crop-subjects", "caption-dataset", "train-lora", "evaluate-lora"}
GPU_STEPS = {"train-lora", "evaluate-lora"}


def _load(path: Path) -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict) -> dict:
    """Every task of the pipeline: the root's (the exit handler's close-run) and those inside the exit handler."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for name, task in list(tasks.items()):
        if "exit-handler" in name:
            tasks.pop(name)
            tasks.update(spec["components"][task["componentRef"]["name"]]["dag"]["tasks"])
    return tasks


def _compile(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "pipeline.yaml"
    subprocess.run([sys.executable, "-m", "pipelines", "compile", "--out", str(out), *args], cwd=ROOT, check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    return out


@pytest.fixture(scope="module")
def compiled() -> tuple[dict, dict]:
    return _load(COMPILED)


def test_committed_yaml_is_what_the_code_compiles_to(tmp_path):
    fresh = _compile(tmp_path)
    assert fresh.read_text(encoding="utf-8") == COMPILED.read_text(encoding="utf-8"), \
        "pipelines/character_lora.yaml is out of date: run `fitad pipeline compile` and commit it"


def test_compile_check_command_agrees(monkeypatch):
    from click.testing import CliRunner

    from fitad.cli import cli

    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["pipeline", "compile", "--check"])
    assert result.exit_code == 0, result.output
    assert "in sync" in result.output


def test_pipeline_parameters_are_pipeline_params(compiled):
    spec, _ = compiled
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    fields = {f.name: f for f in dataclasses.fields(PipelineParams)}
    assert set(inputs) == set(fields)
    defaults = PipelineParams()
    for name, field in fields.items():
        assert inputs[name]["parameterType"] == KFP_TYPES[type(getattr(defaults, name))], name
        assert inputs[name]["defaultValue"] == getattr(defaults, name), name


def test_compiled_defaults_are_the_embedded_params_yaml(monkeypatch):
    """What the Kubeflow UI offers by default is what params.yaml's embedded profile runs."""
    monkeypatch.delenv("FITAD_PROFILE", raising=False)
    assert resolve_params([], ROOT / "params.yaml") == PipelineParams()


def test_every_step_runs_in_the_project_image(compiled):
    spec, _ = compiled
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    labelled = re.search(r'org\.opencontainers\.image\.ref\.name="([^"]+)"', dockerfile).group(1)
    assert IMAGE_NAME == labelled
    version = ast.literal_eval(re.search(r'__version__\s*=\s*(.+)', (ROOT / "src/fitad/__init__.py").read_text()).group(1))
    images = {name.removeprefix("exec-"): ex["container"]["image"] for name, ex in spec["deploymentSpec"]["executors"].items()}
    assert len(images) == 9
    for step, image in images.items():
        expected = f"{labelled}:{version}-cuda" if step in GPU_STEPS else f"{labelled}:{version}"
        assert image == expected, step
    assert {IMAGE, GPU_IMAGE} == set(images.values())


def test_steps_start_without_network_and_call_fitad(compiled):
    spec, _ = compiled
    for name, ex in spec["deploymentSpec"]["executors"].items():
        command = " ".join(ex["container"]["command"])
        assert "pip install" not in command, f"{name} installs packages at run time"
        assert "from fitad.pipeline" in command, f"{name} does not call fitad"


def test_gpu_steps_ask_for_a_gpu_and_the_others_do_not(compiled):
    spec, _ = compiled
    for name, ex in spec["deploymentSpec"]["executors"].items():
        accelerator = (ex["container"].get("resources") or {}).get("accelerator")
        if name.removeprefix("exec-") in GPU_STEPS:
            assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1", name
            assert ex["container"]["resources"]["resourceMemoryRequest"]
        else:
            assert accelerator is None, name


UNCACHED = {"register-model", "close-run"}  # they change the registry / the MLflow runs: never skipped


def test_caching_on_except_register_and_the_exit_handler(compiled):
    spec, _ = compiled
    tasks = _tasks(spec)
    assert len(tasks) == 9
    for name, task in tasks.items():
        assert bool((task.get("cachingOptions") or {}).get("enableCache")) == (name not in UNCACHED), name


def test_the_exit_handler_closes_the_run_whatever_happened(compiled):
    spec, _ = compiled
    close = spec["root"]["dag"]["tasks"]["close-run"]
    assert close["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    handled = spec["components"][spec["root"]["dag"]["tasks"][close["dependentTasks"][0]]["componentRef"]["name"]]
    assert set(handled["dag"]["tasks"]) == set(_tasks(spec)) - {"close-run"}


def test_register_gets_the_run_id_and_the_cached_steps_do_not(compiled):
    """A run id among a step's inputs would make every run a cache miss."""
    spec, _ = compiled
    for name, task in _tasks(spec).items():
        params = task.get("inputs", {}).get("parameters", {})
        has_run = any("pipeline_job" in str(v) for v in params.values())
        assert has_run == (name in UNCACHED), name


DATA_STEPS = {"fetch-data", "clean-text", "crop-subjects", "caption-dataset"}


def test_cached_steps_see_the_fingerprints(compiled):
    """A cached step must miss when the code or its settings changed (prep_version for the data steps,
    config_version for the model steps), fetch also when the data did."""
    spec, _ = compiled
    for name, task in _tasks(spec).items():
        params = task.get("inputs", {}).get("parameters", {})
        if (task.get("cachingOptions") or {}).get("enableCache"):
            key = "prep_version" if name in DATA_STEPS else "config_version"
            assert params[key]["componentInputParameter"].endswith(key), name
        assert ("data_version" in params) == (name == "fetch-data"), name


def _k8s_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, as k8s/README.md documents them for the cluster's operators."""
    text = (ROOT / "k8s" / "README.md").read_text(encoding="utf-8")
    found: dict[str, set[str]] = {}
    for name, keys in re.findall(r"create secret generic (\S+)((?:\s*\\?\s*--from-literal=\S+)+)", text):
        found.setdefault(name, set()).update(re.findall(r"--from-literal=([A-Za-z0-9_]+)=", keys))
    return found


def test_cluster_config_uses_the_objects_k8s_creates(compiled):
    _, executors = compiled
    secrets = _k8s_secrets()
    assert secrets, "no `kubectl create secret generic` commands found in k8s/README.md"
    pvcs = [doc["metadata"]["name"] for f in (ROOT / "k8s" / "base").glob("*.yaml")
            for doc in yaml.safe_load_all(f.read_text()) if doc and doc.get("kind") == "PersistentVolumeClaim"]
    assert len(executors) == 9
    for name, config in executors.items():
        step = name.removeprefix("exec-")
        assert config["fieldPathAsEnv"][0]["fieldPath"] == "metadata.labels['pipeline/runid']"
        for entry in config.get("secretAsEnv", []):
            assert entry["secretName"] in secrets, f"{step}: secret {entry['secretName']} is not documented"
            keys = {k["secretKey"] for k in entry["keyToEnv"]}
            assert keys <= secrets[entry["secretName"]], f"{step}: keys {keys - secrets[entry['secretName']]}"
        mounts = config.get("pvcMount", [])
        if step in MODEL_STEPS:
            assert [(m["constant"], m["mountPath"]) for m in mounts] == [(mounts[0]["constant"], "/cache")]
            assert mounts[0]["constant"] in pvcs
        else:
            assert not mounts, step
        uses_mlflow = step != "export-lora"
        assert any("MLFLOW_TRACKING_URI" in str(e) for e in config.get("secretAsEnv", [])) == uses_mlflow, step
    fetch_keys = {k["envVar"] for e in executors["exec-fetch-data"]["secretAsEnv"] for k in e["keyToEnv"]}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= fetch_keys


def test_the_local_pipeline_has_no_cluster_settings(tmp_path):
    code = ("import sys; from kfp import compiler; from pipelines.character_lora import build; "
            "compiler.Compiler().compile(build(cluster=False), sys.argv[1])")
    out = tmp_path / "local.yaml"
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, check=True, capture_output=True)
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 1  # no kubernetes platform spec
    for ex in docs[0]["deploymentSpec"]["executors"].values():
        assert not (ex["container"].get("resources") or {}).get("accelerator")


@pytest.mark.parametrize("path", sorted((ROOT / "components").glob("*.py")) + sorted((ROOT / "pipelines").glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_doors_stay_thin(path):
    """One file per step, each a door to fitad: short, and importing only kfp, fitad, its own package and the
    standard library (the logic lives in fitad, where the tests and the other doors reach it)."""
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 120, path
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            top = (module or "").split(".")[0]
            assert top in {"kfp", "fitad", "components", "pipelines"} or top in sys.stdlib_module_names, (path, module)


def test_compile_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    import shutil

    from click.testing import CliRunner

    from fitad.cli import cli

    for name in ("components", "pipelines"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    stale = tmp_path / "pipelines" / "character_lora.yaml"
    stale.write_text(stale.read_text(encoding="utf-8").replace("defaultValue: 8.0", "defaultValue: 16.0", 1))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["pipeline", "compile", "--check"])
    assert result.exit_code == 1
    assert "out of date" in result.output and str(stale) in result.output
    fixed = CliRunner().invoke(cli, ["pipeline", "compile"])
    assert fixed.exit_code == 0, fixed.output
    assert stale.read_text(encoding="utf-8") == COMPILED.read_text(encoding="utf-8")


def _prod_ad_service_pod() -> dict:
    """The prod overlay's GPU pod settings, as kubectl-independent YAML (k8s/overlays/prod/ad-service.yaml)."""
    for doc in yaml.safe_load_all((ROOT / "k8s" / "overlays" / "prod" / "ad-service.yaml").read_text()):
        if doc and doc.get("kind") == "Deployment":
            return doc["spec"]["template"]["spec"]
    raise AssertionError("no Deployment in k8s/overlays/prod/ad-service.yaml")


def test_gpu_steps_go_where_the_gpu_service_goes_and_every_step_runs_as_the_image_user(compiled):
    _, executors = compiled
    pod = _prod_ad_service_pod()
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    uid, gid = re.search(r"^USER (\d+):(\d+)", dockerfile, re.M).groups()
    for name, config in executors.items():
        assert config["securityContext"] == {"runAsUser": uid, "runAsGroup": gid, "runAsNonRoot": True}, name
        if name.removeprefix("exec-") in GPU_STEPS:
            assert config["nodeSelector"]["labels"] == pod["nodeSelector"], name
            assert config["tolerations"] == [t for t in pod["tolerations"] if "gpu" in t["key"]], name
        else:
            assert "nodeSelector" not in config and "tolerations" not in config, name


def test_the_cpu_variant_asks_for_no_gpu(tmp_path):
    spec, executors = _load(_compile(tmp_path, "--cpu"))
    for name, ex in spec["deploymentSpec"]["executors"].items():
        assert not (ex["container"].get("resources") or {}).get("accelerator"), name
        assert ex["container"]["image"] == IMAGE, name
    assert all("tolerations" not in c and "nodeSelector" not in c for c in executors.values())
    assert all(c.get("secretAsEnv") or n == "exec-export-lora" for n, c in executors.items())
