"""fitad.pipeline.steps: what each Kubeflow component calls, run here without kfp against a SQLite MLflow store."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pytest

from fitad.pipeline.cluster import RUN_ID_ENV
from fitad.pipeline.params import PipelineParams
from fitad.pipeline.steps import (RUN_ID_TAG, RUN_NAME_TAG, StepContext, StepError, caption_step, clean_text_step,
                                  crop_step, evaluation_html, export_step, fetch_step, kohya_file, plain,
                                  write_metrics)

from tests.pipeline.conftest import PARAMS

TRIGGER = "zork"
PANELS = 3


# ---------------------------------------------------------------- small helpers

class FakeArtifact:
    """Stands in for kfp's Artifact/Metrics (fitad never imports kfp): a path and a log_metric method."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.metadata: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value


def test_plain_keeps_only_the_typed_inputs(tmp_path):
    artifact = FakeArtifact(tmp_path / "x")
    values = {"trigger": "zork", "rank": 8, "learning_rate": 1e-3, "enabled": False, "nothing": None, "empty": "",
              "raw": artifact, "metrics": FakeArtifact(tmp_path / "m"), "a_list": [1, 2], "a_dict": {"k": 1},
              "a_path": tmp_path}
    assert plain(values) == {"trigger": "zork", "rank": 8, "learning_rate": 1e-3, "enabled": False,
                             "nothing": None, "empty": ""}

    def component(raw, metrics, trigger: str, rank: int):  # how a component calls it
        return plain(locals())

    assert component(artifact, artifact, "zork", 4) == {"trigger": "zork", "rank": 4}


def test_write_metrics_logs_and_writes_the_numbers(tmp_path):
    artifact = FakeArtifact(tmp_path / "deep" / "er" / "metrics")
    numbers = {"ok": 3.0, "failed": 0.0, "elapsed_s": 1.25}
    write_metrics(artifact, numbers)
    assert artifact.metadata == numbers
    assert json.loads(Path(artifact.path).read_text(encoding="utf-8")) == numbers


# ---------------------------------------------------------------- StepContext

def test_step_context_refuses_unknown_inputs():
    with pytest.raises(TypeError, match="bogus"):
        StepContext.of({"rank": 4, "bogus": 1})
    with pytest.raises(TypeError, match="raw"):
        StepContext.of({"raw": "/some/artifact"})


def test_step_context_run_id_from_input_or_environment(monkeypatch):
    ctx = StepContext.of({"rank": 4, "kfp_run_id": "given-id", "kfp_run_name": "my run"})
    assert ctx.links == {RUN_ID_TAG: "given-id", RUN_NAME_TAG: "my run"}
    assert ctx.given == {"rank"} and ctx.params.rank == 4
    assert StepContext.of({}).links == {}

    monkeypatch.setenv(RUN_ID_ENV, "env-id")
    assert StepContext.of({"rank": 4}).links == {RUN_ID_TAG: "env-id"}
    assert StepContext.of({"kfp_run_id": "given-id"}).links[RUN_ID_TAG] == "given-id"  # the input wins
    assert StepContext.of({"kfp_run_id": ""}).links[RUN_ID_TAG] == "env-id"  # an empty input does not


def test_step_context_none_inputs_are_not_given():
    ctx = StepContext.of({"rank": None, "steps": 3})
    assert ctx.given == {"steps"}
    assert ctx.params == PipelineParams(steps=3)


def test_step_config_keeps_params_yaml_for_what_was_not_given(params_yaml):
    from fitad.config import to_dict

    prep = StepContext.of({"resolution": 256}).config("prep")
    assert prep.resolution == 256
    got = to_dict(prep)
    for key, expected in params_yaml["prep"].items():
        if key == "resolution":
            continue
        value = got[key]
        if isinstance(expected, float):
            assert value == pytest.approx(expected), key
        elif key.endswith("_dir") and isinstance(expected, str):
            assert Path(value).expanduser() == Path(expected).expanduser(), key
        else:
            assert value == expected, key
    train = StepContext.of({"resolution": 256}).config("train")
    assert train.resolution == 256 and train.rank == params_yaml["train"]["rank"]


def test_step_config_with_a_profile(params_yaml):
    import os

    prod = params_yaml["profiles"]["production"]
    ctx = StepContext.of({"profile": "production", "resolution": 256})
    assert ctx.config("prep").resolution == 256
    train = ctx.config("train")
    assert train.resolution == 256
    assert train.rank == prod["train"]["rank"] and train.steps == prod["train"]["steps"]
    assert train.base_model == prod["train"]["base_model"]
    assert train.learning_rate == pytest.approx(prod["train"]["learning_rate"])
    assert ctx.config("gate").min_clip_i == pytest.approx(prod["gate"]["min_clip_i"])
    assert ctx.config("evaluate").clip_model == prod["evaluate"]["clip_model"]
    assert ctx.config("prep").text_box_threshold == pytest.approx(params_yaml["prep"]["text_box_threshold"])
    assert "FITAD_PROFILE" not in os.environ


# ---------------------------------------------------------------- the prep steps end to end

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """fetch (synth:3) -> clean-text -> crop-subjects -> caption into one SQLite MLflow store."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("chain")
    store = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store)
        mp.setenv("FITAD_PARAMS", str(PARAMS))
        mp.setenv("FITAD_HOME", str(root / ".fitad"))
        for name in ("FITAD_PROFILE", "FITAD_PARENT_RUN_ID"):
            mp.delenv(name, raising=False)
        mp.setenv(RUN_ID_ENV, "kfp-run-7")  # the cached steps read the run id from the pod's environment
        folders = {name: root / name for name in ("raw", "clean", "crops", "data")}
        totals = {
            "fetch": fetch_step(str(folders["raw"]), {"data_uri": f"synth:{PANELS}", "profile": "",
                                                      "experiment": "pipe-test", "kfp_run_id": "kfp-run-7"}),
            "clean-text": clean_text_step(str(folders["raw"]), str(folders["clean"]),
                                          {"text_box_threshold": 0.6, "profile": "", "experiment": "pipe-test"}),
            "crop-subjects": crop_step(str(folders["clean"]), str(folders["crops"]),
                                       {"resolution": 96, "profile": "", "experiment": "pipe-test"}),
            "caption": caption_step(str(folders["crops"]), str(folders["data"]),
                                    {"trigger": TRIGGER, "class_word": "girl", "captioner": "template",
                                     "profile": "", "experiment": "pipe-test"}),
        }
    return {"store": store, "folders": folders, "totals": totals}


def test_steps_return_numeric_totals_and_write_their_folders(chain):
    totals, folders = chain["totals"], chain["folders"]
    assert totals["fetch"]["files"] == PANELS
    assert totals["fetch"]["bytes"] == sum(p.stat().st_size for p in folders["raw"].glob("*.png"))
    for stage in ("clean-text", "crop-subjects", "caption"):
        numbers = totals[stage]
        assert all(isinstance(v, float) for v in numbers.values()), stage
        assert numbers["inputs"] == PANELS and numbers["ok"] == PANELS and numbers["failed"] == 0, stage
        manifest = json.loads((folders[{"clean-text": "clean", "crop-subjects": "crops",
                                         "caption": "data"}[stage]] / "manifest.json").read_text())
        assert manifest["totals"]["ok"] == numbers["ok"]
        assert manifest["totals"]["images_written"] == numbers["images_written"]
    assert sorted(p.name for p in (folders["clean"] / "images").glob("*.png")) == \
        sorted(p.name for p in folders["raw"].glob("panel_*.png"))
    assert len(list((folders["clean"] / "masks").glob("*.png"))) == PANELS
    crops = sorted((folders["crops"] / "images").glob("*.png"))
    assert len(crops) == totals["crop-subjects"]["images_written"] >= PANELS
    from PIL import Image

    for crop in crops:
        with Image.open(crop) as image:
            assert image.size == (96, 96)  # the resolution the crop step was given


def test_caption_step_writes_the_dataset_with_the_trigger_first(chain):
    data = chain["folders"]["data"]
    crops = sorted(p.name for p in (chain["folders"]["crops"] / "images").glob("*.png"))
    assert sorted(p.name for p in (data / "images").glob("*.png")) == crops
    for name in crops:
        assert (data / "images" / name).read_bytes() == (chain["folders"]["crops"] / "images" / name).read_bytes()
        caption = (data / "images" / name).with_suffix(".txt").read_text(encoding="utf-8")
        assert caption.split()[0] == TRIGGER
        assert caption.strip() == f"{TRIGGER} girl"  # the template captioner: trigger, class word
    lines = [json.loads(line) for line in (data / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(Path(r["file_name"]).name for r in lines) == crops
    assert all(r["text"].split()[0] == TRIGGER and (data / r["file_name"]).is_file() for r in lines)
    assert (data / "report.json").is_file()


def test_each_step_has_its_mlflow_run_under_one_pipeline_run(chain):
    from mlflow.tracking import MlflowClient

    from fitad.tracking.lineage import RUN_FILE

    client = MlflowClient(chain["store"])
    records = {stage: json.loads((chain["folders"][folder] / RUN_FILE).read_text(encoding="utf-8"))
               for stage, folder in (("fetch", "raw"), ("clean-text", "clean"), ("crop-subjects", "crops"),
                                     ("caption", "data"))}
    parents = {r["parent_run_id"] for r in records.values()}
    assert len(parents) == 1
    parent = parents.pop()
    assert len({r["run_id"] for r in records.values()}) == 4 and parent not in {r["run_id"] for r in records.values()}
    experiment = client.get_experiment_by_name("pipe-test")
    assert experiment is not None
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["fitad.stage"] for r in children) == ["caption", "clean-text", "crop-subjects",
                                                                    "fetch"]
    for stage, record in records.items():
        run = client.get_run(record["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["fitad.stage"] == stage == record["stage"]
        assert run.data.tags[RUN_ID_TAG] == "kfp-run-7"
        assert run.info.status == "FINISHED"
        assert run.info.experiment_id == experiment.experiment_id
    pipeline_run = client.get_run(parent)
    assert pipeline_run.info.status == "RUNNING"  # the register step ends it
    assert pipeline_run.data.tags[RUN_ID_TAG] == "kfp-run-7"
    # the numbers each step returned are its run's metrics; the prep steps log their config
    for stage in ("fetch", "clean-text", "caption"):
        metrics = client.get_run(records[stage]["run_id"]).data.metrics
        assert {k: metrics[k] for k in chain["totals"][stage]} == pytest.approx(chain["totals"][stage])
    caption_params = client.get_run(records["caption"]["run_id"]).data.params
    assert caption_params["trigger"] == TRIGGER
    crop_params = client.get_run(records["crop-subjects"]["run_id"]).data.params
    assert crop_params["resolution"] == "96"
    assert client.get_run(records["fetch"]["run_id"]).data.tags["fitad.data_uri"] == f"synth:{PANELS}"


def test_a_step_whose_every_input_fails_raises_and_fails_its_runs(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    from fitad.tracking.lineage import FAILURE_TAG, RUN_FILE

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00not really a png" * 20)
    out = tmp_path / "clean"
    with pytest.raises(StepError) as info:
        clean_text_step(str(raw), str(out), {"experiment": "pipe-fail"})
    message = str(info.value)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    (item,) = manifest["items"]
    assert item["input"] == "broken.png" and item["status"] == "failed" and item["reason"]
    assert message.startswith("clean-text:") and item["reason"] in message
    assert "1 inputs" in message

    client = MlflowClient(mlflow_store)
    record = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    stage_run = client.get_run(record["run_id"])
    assert stage_run.info.status == "FAILED"
    assert "StepError" in stage_run.data.tags[FAILURE_TAG] and item["reason"] in stage_run.data.tags[FAILURE_TAG]
    pipeline_run = client.get_run(record["parent_run_id"])
    assert pipeline_run.info.status == "FAILED"
    assert pipeline_run.data.tags[FAILURE_TAG].startswith("clean-text:")
    assert item["reason"] in pipeline_run.data.tags[FAILURE_TAG]


# ---------------------------------------------------------------- the evaluation page

def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_evaluation_html_embeds_the_grid_and_escapes_the_metrics(tmp_path):
    grid = _tiny_png()
    (tmp_path / "grid.png").write_bytes(grid)
    evil = "<script>alert(1)</script>"
    metrics = {"clip_t": 0.123456, "clip_i": 0.9, evil: 1.5, "note": "<b>&</b>", "count": 4}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    page = evaluation_html(str(tmp_path))
    sources = re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(sources) == 1 and base64.b64decode(sources[0]) == grid
    assert "<script" not in page and html.escape(evil) in page
    assert html.escape("<b>&</b>") in page and "<b>" not in page
    assert "<td>0.1235</td>" in page and "<td>4</td>" in page
    assert page.count("<tr>") == len(metrics)


def test_evaluation_html_without_grid_has_no_image(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"clip_t": 0.5}), encoding="utf-8")
    page = evaluation_html(str(tmp_path))
    assert "<img" not in page and "<td>clip_t</td><td>0.5000</td>" in page


# ---------------------------------------------------------------- export

def _lora_dir(train_dir: Path, trigger: str | None) -> dict:
    """A minimal SD1.5 LoRA as training writes it: diffusers weights of one module and fitad_lora.json."""
    import torch
    from safetensors.torch import save_file

    lora = train_dir / "lora"
    lora.mkdir(parents=True)
    module = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    generator = torch.Generator().manual_seed(0)
    tensors = {f"{module}.lora_A.weight": torch.randn(4, 32, generator=generator),
               f"{module}.lora_B.weight": torch.randn(32, 4, generator=generator)}
    save_file(tensors, str(lora / "pytorch_lora_weights.safetensors"))
    info = {"family": "sd15", "base_model": "tiny-sd15", "adapter_type": "lora", "rank": 4, "alpha": 4.0,
            "target_modules": ["to_q"], "trigger": trigger, "resolution": 64, "steps": 1}
    (lora / "fitad_lora.json").write_text(json.dumps(info), encoding="utf-8")
    return tensors


def test_export_step_names_the_file_after_the_trigger(tmp_path):
    from safetensors.torch import load_file

    source = _lora_dir(tmp_path / "train", TRIGGER)
    out = tmp_path / "export"
    assert kohya_file(str(tmp_path)) is None
    numbers = export_step(str(tmp_path / "train"), str(out))
    found = kohya_file(str(out))
    assert found is not None and Path(found).name == f"{TRIGGER}_lora.safetensors"
    assert [p.name for p in out.iterdir()] == [f"{TRIGGER}_lora.safetensors"]
    assert set(numbers) == {"kohya_kb"}
    assert abs(numbers["kohya_kb"] * 1024 - Path(found).stat().st_size) <= 52  # the file's size, in KiB
    exported = load_file(found)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    module = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    assert exported[f"{name}.lora_down.weight"].equal(source[f"{module}.lora_A.weight"])
    assert exported[f"{name}.lora_up.weight"].equal(source[f"{module}.lora_B.weight"])


def test_export_step_without_a_trigger_writes_lora_safetensors(tmp_path):
    _lora_dir(tmp_path / "train", None)
    export_step(str(tmp_path / "train"), str(tmp_path / "export"))
    assert Path(kohya_file(str(tmp_path / "export"))).name == "lora.safetensors"


def test_close_step_fails_what_a_killed_pod_left_running(mlflow_store, tmp_path):
    """The exit handler's work: runs of this Kubeflow run still RUNNING become FAILED with the final state; other
    runs and finished ones stay as they are; a run that succeeded closes nothing."""
    from mlflow.tracking import MlflowClient

    from fitad.pipeline.steps import RUN_ID_TAG, close_step
    from fitad.tracking.lineage import FAILURE_TAG, open_stage_run

    killed = open_stage_run("mlflow", "train", tmp_path / "a", experiment="fitad", pipeline_tags={RUN_ID_TAG: "r1"})
    other = open_stage_run("mlflow", "train", tmp_path / "b", experiment="fitad", pipeline_tags={RUN_ID_TAG: "r2"})
    client = MlflowClient(mlflow_store)
    for success in ("SUCCEEDED", "COMPLETE", "CACHED"):  # the API's and ML Metadata's spellings
        assert close_step(success, "", "fitad", "r1") == 0
    assert close_step("FAILED", "pod train-lora: OOMKilled", "fitad", "r1") == 2  # the stage run and its pipeline run
    for run_id in (killed.run_id, killed.parent_run_id):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert "OOMKilled" in run.data.tags[FAILURE_TAG] and "FAILED" in run.data.tags[FAILURE_TAG]
    assert client.get_run(other.run_id).info.status == "RUNNING"
    assert close_step("FAILED", "again", "fitad", "r1") == 0  # nothing left running
    assert close_step("FAILED", "x", "no-such-experiment", "r2") == 0
