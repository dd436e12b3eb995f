"""The DVC pipeline is real: complete code deps, and `dvc repro` on a fresh clone, offline, with real dvc.

1. Every ``src/fitad`` file a stage's entry modules import is covered by one of the stage's declared deps
   (the file itself or a parent folder), so changing the code a stage runs re-runs the stage.
2. A fresh clone of the repository (git-tracked and untracked-not-ignored files, committed into a new git repo)
   runs ``dvc repro`` end to end with the embedded profile: tiny models from fitad.zoo, MLflow in SQLite under
   ./mlflow. Checked there: every stage ran and dvc.lock records its outs; ``dvc status`` is clean; metrics and
   plots show; a second repro runs nothing; the fitad modules each stage *actually used* while running (lazy
   imports included, recorded by a sitecustomize hook) are covered by its deps; ``dvc exp run -S train.rank=4``
   re-runs train but not prepare; a failing train keeps prepare's outputs and the next repro resumes at train.

Sibling CLI doors: ``fitad.cli`` imports every ``fitad/cli/*.py`` door at start-up to register its command.
Another stage's door only declares click options there (its body never runs in this stage), so it is not a dep
(otherwise editing ``fitad ad`` would retrain). The closures below import ``fitad.cli`` with that registration
turned off, then the stage's own door; ``fitad/cli/__init__.py`` itself is required of every stage.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DVC = Path(sys.executable).with_name("dvc")
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
STAGES = PIPELINE["stages"]

# The modules each stage's command runs: its stage functions and its CLI door.
ENTRY_MODULES = {
    "synth": ["fitad.synth", "fitad.cli.data"],
    "prepare": ["fitad.prep.run", "fitad.prep.caption", "fitad.prep.text", "fitad.prep.segment", "fitad.cli.prep"],
    "train": ["fitad.train.sd_lora", "fitad.train.flux_lora", "fitad.cli.train"],
    "export": ["fitad.lora.export", "fitad.cli.export"],
    "evaluate": ["fitad.evaluate", "fitad.cli.evaluate"],
    "register": ["fitad.tracking.registry", "fitad.cli.register"],
}
# fitad.tracking only reports a run (params, metrics, artifacts to MLflow): it does not change the outputs of a
# stage, except `register`, whose output *is* the registry's answer. So only register must depend on it.
REPORTING = ("src/fitad/tracking/",)
REPORTING_EXEMPT_STAGES = {"register"}

# Run in a subprocess: import fitad.cli without registering the doors, then the given modules; print, as
# JSON, the fitad modules loaded (name -> file) and the modules that do not exist (yet).
_CLOSURE = textwrap.dedent("""
    import importlib, importlib.util, json, pkgutil, sys
    real_iter = pkgutil.iter_modules
    pkgutil.iter_modules = lambda *a, **k: iter(())  # fitad.cli registers its doors through iter_modules
    import fitad.cli
    pkgutil.iter_modules = real_iter
    doors = sorted(n for n in sys.modules if n.startswith("fitad.cli.") and n != "fitad.cli.common")
    missing = []
    for name in sys.argv[1:]:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(name)
        else:
            missing.append(name)
    files = {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] == "fitad"}
    print(json.dumps({"files": {n: f for n, f in files.items() if f}, "missing": missing,
                      "doors_at_start": doors}))
""")


def import_closure(modules: list[str], src: Path = SRC) -> tuple[set[str], list[str]]:
    """Repo-relative paths of the src/fitad files loaded by importing ``modules`` (see the module docstring),
    and the modules that do not exist."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", _CLOSURE, *modules], capture_output=True, text=True, env=env,
                          cwd=src.parent, timeout=300)
    assert proc.returncode == 0, f"importing {modules} failed:\n{proc.stderr[-4000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["doors_at_start"], (
        f"fitad.cli imported {out['doors_at_start']} although door registration was turned off: it no longer "
        f"registers through pkgutil.iter_modules; update _CLOSURE")
    root = src.parent.resolve()
    files = set()
    for path in out["files"].values():
        path = Path(path).resolve()
        if path.is_relative_to(root / "src" / "fitad"):
            files.add(path.relative_to(root).as_posix())
    return files | {"src/fitad/cli/__init__.py"}, out["missing"]


def stage_deps(stage: dict) -> list[str]:
    return [str(d).rstrip("/") for d in stage.get("deps", [])]


def uncovered(files: set[str], deps: list[str], stage: str) -> list[str]:
    """The files no dep covers (a dep is the file itself or a folder above it); reporting modules are
    exempt except for the stages that report for a living."""
    def covered(path: str) -> bool:
        return any(path == dep or path.startswith(dep + "/") for dep in deps)

    exempt = () if stage in REPORTING_EXEMPT_STAGES else REPORTING
    return sorted(f for f in files if not f.startswith(exempt) and not covered(f))


def test_every_stage_has_entry_modules():
    assert set(ENTRY_MODULES) == set(STAGES), "a stage was added or renamed: name its entry modules here"


@pytest.mark.parametrize("name", sorted(ENTRY_MODULES))
def test_stage_deps_cover_the_code_it_imports(name):
    files, missing = import_closure(ENTRY_MODULES[name])
    if missing:
        pytest.skip(f"stage {name}: module(s) {', '.join(missing)} do not exist yet")
    gaps = uncovered(files, stage_deps(STAGES[name]), name)
    assert not gaps, f"stage {name} imports {gaps} but no dep in dvc.yaml covers them"


def test_every_stage_lists_the_profile_params():
    for name, stage in STAGES.items():
        params = {p for p in stage.get("params", []) if isinstance(p, str)}
        assert {"profile", "profiles"} <= params, f"stage {name}: a profile switch must re-run it"


def test_declared_source_deps_exist():
    for name, stage in STAGES.items():
        for dep in stage_deps(stage):
            if dep.startswith("src/"):
                assert (ROOT / dep).exists(), f"stage {name}: dep {dep} does not exist"


def test_dvc_is_initialised_with_a_local_default_remote():
    config = (ROOT / ".dvc" / "config").read_text(encoding="utf-8")
    assert "remote = local" in config and "url = ../.dvc-storage" in config
    assert "analytics = false" in config
    ignored = subprocess.run(["git", "check-ignore", "-q", ".dvc-storage/x"], cwd=ROOT).returncode
    assert ignored == 0, "the local remote folder must be git-ignored"


# ---------------------------------------------------------------- the fresh clone

# A sitecustomize that records, per `fitad` process, the fitad modules its command body imports (new ones and
# ones already loaded at start-up), so lazy imports inside functions are checked against the deps too.
_IMPORT_HOOK = textwrap.dedent('''
    import os as _os

    if _os.environ.get("FITAD_IMPORT_LOG"):
        import atexit as _atexit
        import builtins as _builtins
        import json as _json
        import sys as _sys

        _state = {"snapshot": None, "names": set()}
        _real_import = _builtins.__import__

        def _import(name, globals=None, locals=None, fromlist=(), level=0):
            module = _real_import(name, globals, locals, fromlist, level)
            if _state["snapshot"] is not None and level == 0 and name.split(".")[0] == "fitad":
                _state["names"].add(name)
                _state["names"].update(f"{name}.{i}" for i in fromlist or () if isinstance(i, str))
            return module

        _builtins.__import__ = _import
        import click.core as _click_core

        _real_invoke = _click_core.Command.invoke

        def _invoke(self, ctx):  # the command line is parsed and every door registered: the command runs
            if _state["snapshot"] is None:
                _state["snapshot"] = set(_sys.modules)
            return _real_invoke(self, ctx)

        _click_core.Command.invoke = _invoke

        def _dump():
            if _state["snapshot"] is None or not _sys.argv[0].endswith("fitad"):
                return
            new = {n for n in _sys.modules if n.split(".")[0] == "fitad"} - _state["snapshot"]
            names = sorted(n for n in _state["names"] | new if n in _sys.modules)
            path = _os.path.join(_os.environ["FITAD_IMPORT_LOG"], f"{_os.getpid()}.json")
            with open(path, "w", encoding="utf-8") as fh:
                _json.dump({"argv": _sys.argv[1:], "modules": names}, fh)

        _atexit.register(_dump)
''')


class Clone:
    """A fresh clone of the repository under ``root`` and the environment its commands run in."""

    def __init__(self, root: Path, env: dict[str, str], import_log: Path):
        self.root, self.env, self.import_log = root, env, import_log

    def run(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
        argv = [str(DVC), *args] if args[0] != "git" else list(args)
        proc = subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
        return proc

    def lock(self) -> dict:
        return yaml.safe_load((self.root / "dvc.lock").read_text(encoding="utf-8"))["stages"]

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text(encoding="utf-8"))

    def write_params(self, params: dict) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def repo_files(root: Path) -> list[str]:
    """The files a clone of ``root`` would hold: tracked, plus untracked files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root, check=True,
                         capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (root / f).is_file()]


def ran(proc: subprocess.CompletedProcess) -> set[str]:
    """Stages a repro actually ran (not skipped, not restored from the run cache)."""
    text = proc.stdout + proc.stderr
    return {name for name in STAGES if f"Running stage '{name}'" in text}


def declared_outs(stage: dict) -> set[str]:
    paths = set()
    for kind in ("outs", "metrics", "plots"):
        for item in stage.get(kind, []):
            paths.add(next(iter(item)) if isinstance(item, dict) else item)
    return paths


@pytest.fixture(scope="module")
def clone(tmp_path_factory, tiny_models_root) -> Clone:
    """A fresh clone on which `dvc repro` ran once; returns it with the output of that run."""
    if not DVC.exists():
        pytest.skip(f"dvc is not installed beside {sys.executable}")
    base = tmp_path_factory.mktemp("dvc-clone")
    root = base / "repo"
    for rel in repo_files(ROOT):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, root / rel)
    hook = base / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_IMPORT_HOOK, encoding="utf-8")
    import_log = base / "imports"
    import_log.mkdir()
    home = base / "fitad-home"
    home.mkdir()
    (home / "models").symlink_to(Path(tiny_models_root).resolve(), target_is_directory=True)
    gitconfig = base / "gitconfig"
    gitconfig.write_text("[user]\n\tname = Fit-AD Test\n\temail = test@fitad.invalid\n[init]\n\tdefaultBranch = main\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GIT_", "FITAD_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{hook}{os.pathsep}{root / 'src'}",  # the clone's code, not the checkout's editable install
        "PYTHONDONTWRITEBYTECODE": "1",
        "FITAD_HOME": str(home), "FITAD_IMPORT_LOG": str(import_log),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "OMP_NUM_THREADS": "1",  # tiny models on a shared CPU: a second thread only adds sync stalls
    })
    c = Clone(root, env, import_log)
    c.run("git", "init", "-q")
    c.run("git", "add", "-A")
    c.run("git", "commit", "-q", "-m", "fresh clone")
    start = time.perf_counter()
    c.first = c.run("repro")
    c.first_wall_s = time.perf_counter() - start
    print(f"dvc repro on a fresh clone: {c.first_wall_s:.0f} s")
    return c


def test_repro_runs_every_stage_and_locks_its_outs(clone):
    assert ran(clone.first) == set(STAGES), clone.first.stdout[-4000:]
    lock = clone.lock()
    assert set(lock) == set(STAGES)
    for name, stage in STAGES.items():
        locked = {o["path"] for o in lock[name].get("outs", [])}
        assert locked == declared_outs(stage), f"dvc.lock: stage {name}"
        for path in locked:
            assert (clone.root / path).exists(), f"stage {name}: {path} missing"
    assert (clone.root / "mlflow" / "mlflow.db").is_file()  # the embedded tracking store, relative to the clone
    assert (clone.root / "outputs/train/lora.safetensors").stat().st_size > 0
    with open(clone.root / "outputs/train/loss.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and int(rows[-1]["step"]) == clone.params()["train"]["steps"]
    registration = json.loads((clone.root / "outputs/register/registration.json").read_text())
    assert "candidate" in registration["aliases"]
    # git stays clean: every output is ignored, nothing DVC wrote needs committing but dvc.lock
    status = clone.run("git", "status", "--porcelain").stdout.split("\n")
    assert [line for line in status if line.strip()] == ["?? dvc.lock"]


def test_status_metrics_and_plots(clone, tmp_path):
    status = clone.run("status", "--json")
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    metrics = json.loads(clone.run("metrics", "show", "--json").stdout)
    files = metrics[""]["data"]
    for path in ("data/prepared/report.json", "outputs/train/train_summary.json", "outputs/eval/metrics.json"):
        assert "error" not in files[path] and files[path]["data"], path
    assert files["outputs/train/train_summary.json"]["data"]["status"] == "completed"
    assert {"clip_t", "clip_i", "effect_size"} <= set(files["outputs/eval/metrics.json"]["data"])
    plots = json.loads(clone.run("plots", "show", "--json").stdout)
    assert not plots.get("errors"), plots.get("errors")
    assert {"loss", "eval_scores"} <= set(plots["data"])
    loss_rows = plots["data"]["loss"][0]["content"]["data"]["values"]
    assert loss_rows and {"step", "loss"} <= set(loss_rows[0])
    score_rows = plots["data"]["eval_scores"][0]["content"]["data"]["values"]
    assert score_rows and {"clip_t", "clip_i"} <= set(score_rows[0])
    clone.run("plots", "show", "-o", str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "index.html").is_file()


def _pipeline_runs(clone) -> dict:
    """{parent run id: (status, tags, sorted stage names of its children)} in the clone's MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{clone.root / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    out = {}
    for parent in (r for r in runs if r.data.tags.get("fitad.pipeline") == "true"):
        stages = sorted(r.data.tags.get("fitad.stage", "?") for r in runs
                        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
        out[parent.info.run_id] = (parent.info.status, parent.data.tags, stages)
    return out


def test_repro_is_one_finished_pipeline_run_with_a_run_per_stage(clone):
    runs = _pipeline_runs(clone)
    assert len(runs) == 1, runs
    (status, tags, stages), = runs.values()
    assert status == "FINISHED" and stages == ["evaluate", "prep", "train"]
    assert tags["fitad.gate.decision"] in ("pass", "fail") and tags["fitad.registered_model"] == "fitad-sks"
    # the data hash tag is the md5 dvc.lock records for the same dep
    lock = clone.lock()
    raw = next(d for d in lock["prepare"]["deps"] if d["path"] == "data/raw/synth")
    assert tags["fitad.md5.data/raw/synth"] == raw["md5"]


def test_second_repro_runs_nothing(clone):
    again = clone.run("repro")
    assert ran(again) == set(), again.stdout[-4000:]


def test_push_and_pull_through_the_local_remote(clone):
    """The default remote is the repo-relative folder .dvc-storage (git-ignored): push, lose the cache and every
    cached output, pull them back, and the pipeline is up to date again."""
    clone.run("push")
    storage = clone.root / ".dvc-storage"
    assert storage.is_dir() and any(storage.rglob("*"))
    assert clone.run("git", "check-ignore", "-q", ".dvc-storage", check=False).returncode == 0
    shutil.rmtree(clone.root / ".dvc" / "cache")
    lost = []
    for name, stage in STAGES.items():
        for out in clone.lock()[name].get("outs", []):
            path = clone.root / out["path"]
            if "registration.json" not in out["path"]:  # not cached: the registry's record stays
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                lost.append(out["path"])
    clone.run("pull")
    assert all((clone.root / p).exists() for p in lost)
    assert json.loads(clone.run("status", "--json").stdout or "{}") == {}


def test_stage_deps_cover_what_each_stage_ran(clone):
    """Lazily imported modules too: the modules each stage's process imported while its command ran."""
    commands = {tuple(shlex.split(stage["cmd"])[1:]): name for name, stage in STAGES.items()}
    used: dict[str, set[str]] = {}
    for log in clone.import_log.glob("*.json"):
        record = json.loads(log.read_text())
        name = commands.get(tuple(record["argv"]))
        if name is not None:
            used.setdefault(name, set()).update(record["modules"])
    assert set(used) == set(STAGES), f"no import record for {set(STAGES) - set(used)}"
    for name, modules in sorted(used.items()):
        files, _ = import_closure(sorted(modules), clone.root / "src")
        gaps = uncovered(files, stage_deps(STAGES[name]), name)
        assert not gaps, f"stage {name} ran code in {gaps} but no dep in dvc.yaml covers it"


def test_exp_run_sets_a_param_and_reruns_from_train(clone):
    before = clone.lock()
    proc = clone.run("exp", "run", "-S", "train.rank=4")
    assert "train" in ran(proc) and "prepare" not in ran(proc) and "synth" not in ran(proc), proc.stdout[-4000:]
    after = clone.lock()
    assert after["prepare"]["outs"] == before["prepare"]["outs"]
    assert after["train"]["outs"] != before["train"]["outs"]
    assert after["train"]["params"]["params.yaml"]["train"]["rank"] == 4
    # ... and the variant is what was trained (a profile's `train.rank` must not silently win over -S)
    manifest = json.loads((clone.root / "outputs/train/lora/fitad_lora.json").read_text())
    assert manifest["rank"] == 4, (
        f"dvc exp run -S train.rank=4 trained rank {manifest['rank']}: the active profile's train.rank "
        f"(params.yaml profiles.{clone.params().get('profile')}.train) is laid over the section and wins")
    shown = json.loads(clone.run("exp", "show", "--json").stdout)
    ranks = []
    for commit in shown:
        for group in commit.get("experiments") or []:
            for rev in group.get("revs", []):
                params = ((rev.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
                ranks.append(params.get("train", {}).get("rank"))
    assert 4 in ranks, json.dumps(shown)[:3000]
    # the variant is a pipeline run of its own, which says which finished run it follows
    runs = _pipeline_runs(clone)
    follows = [(status, stages) for status, tags, stages in runs.values() if tags.get("fitad.follows_pipeline_run")]
    assert ("FINISHED", ["evaluate", "train"]) in follows, runs


def test_a_failed_stage_keeps_earlier_outputs_and_the_rerun_resumes(clone):
    """prepare changes and train fails: prepare's new outputs stay locked; the fixed run starts at train."""
    good = clone.params()
    changed = json.loads(json.dumps(good))
    changed["prep"]["crop_margin"] = round(float(good["prep"]["crop_margin"]) + 0.05, 3)
    bad = json.loads(json.dumps(changed))
    bad["train"]["lr_scheduler"] = "no-such-schedule"  # SDLoraConfig rejects it: `fitad train` exits with an error
    clone.write_params(bad)
    failed = clone.run("repro", check=False)
    assert failed.returncode != 0
    assert "prepare" in ran(failed) and "train" in ran(failed) and "export" not in ran(failed), failed.stdout[-4000:]
    assert "lr_scheduler" in failed.stdout + failed.stderr
    lock = clone.lock()
    assert lock["prepare"]["params"]["params.yaml"]["prep"]["crop_margin"] == changed["prep"]["crop_margin"]
    for out in lock["prepare"]["outs"]:
        assert (clone.root / out["path"]).exists(), f"{out['path']} of the finished stage was lost"
    assert json.loads(clone.run("status", "prepare", "--json").stdout or "{}") == {}

    clone.write_params(changed)
    resumed = clone.run("repro", "train")
    assert ran(resumed) == {"train"}, resumed.stdout[-4000:]
    assert "Stage 'prepare' didn't change" in resumed.stdout + resumed.stderr
    assert (clone.root / "outputs/train/lora").is_dir()
