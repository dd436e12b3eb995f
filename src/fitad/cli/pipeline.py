"""``fitad pipeline``: the character-LoRA pipeline on Kubeflow (compile, submit) or on this machine (kfp.local).

A thin door: it checks the run's parameters with fitad.pipeline.params (a bad one fails here, before anything is
compiled or sent), then runs ``python -m pipelines ...`` in the project root. kfp is never imported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click

PARAM_HELP = ("Pipeline parameter KEY=VALUE (repeatable), e.g. --param rank=16 --param family=flux; "
              "`fitad pipeline params` lists them. Unset ones take params.yaml's values.")


def _root() -> Path:
    from fitad.tracking.store import project_root

    root = project_root()
    if not (root / "pipelines" / "__main__.py").is_file():
        raise click.ClickException(f"pipelines/ not found under {root}: run fitad pipeline in the project")
    return root


RESULT = "@fitad-result "  # pipelines/__main__.py marks its answer with it
# the lines of a local run worth showing without --verbose: steps starting, ending, cache hits, errors
HEADLINE = re.compile(r"Running pipeline|finished with status|cache hit|ERROR|Error|Traceback|raise |Exception")


def _door(args: list[str], env: dict[str, str] | None = None, log: Path | None = None,
          verbose: bool = True) -> tuple[int, dict]:
    """Run ``python -m pipelines ARGS``. Its output goes to ``log`` (when given) and to stderr (every line, or
    with ``verbose=False`` only the headlines); the line marked RESULT is its JSON answer."""
    root = _root()
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(filter(None, [str(root),
                                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *args], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    answer: dict = {}
    assert proc.stdout is not None
    with (log.open("w", encoding="utf-8") if log else contextlib.nullcontext()) as sink:
        for line in proc.stdout:
            if line.startswith(RESULT):
                answer = json.loads(line[len(RESULT):])
                continue
            if sink:
                sink.write(line)
            if verbose or HEADLINE.search(line):
                click.echo(line, nl=False, err=True)
    return proc.wait(), answer


def _arguments(params: tuple[str, ...], params_path: Path | None, local: bool = False) -> dict:
    from fitad.pipeline.fingerprint import config_version, data_version, prep_version
    from fitad.pipeline.params import check_params, resolve_params

    resolved = resolve_params(params, params_path)
    if local and "://" not in resolved.data_uri and not resolved.data_uri.startswith("synth:"):
        resolved.data_uri = str(Path(resolved.data_uri).resolve())  # the steps run in the project root
    arguments = dataclasses.asdict(resolved)  # every parameter, sent explicitly
    checked = check_params(arguments, params_path)  # every stage's config too: rank 0 or an unknown family stop here
    arguments.update(data_version=data_version(checked.data_uri), prep_version=prep_version(checked, params_path),
                     config_version=config_version(checked, params_path))
    return arguments


@click.group("pipeline")
def pipeline_group() -> None:
    """The character-LoRA pipeline: fetch -> clean text -> crop -> caption -> train -> export -> evaluate ->
    register, as Kubeflow components (components/, pipelines/).

    \b
    fitad pipeline run --local                  every step here with kfp.local (embedded defaults)
    fitad pipeline compile [--check]            pipelines/character_lora.yaml from the code
    fitad pipeline submit --host URL            a run on a Kubeflow Pipelines cluster
    fitad pipeline params                       the parameters and their defaults
    """


@pipeline_group.command("params")
def params_cmd() -> None:
    """List the pipeline's parameters with the values a run would get from params.yaml now ("" : the section's)."""
    from fitad.pipeline.params import resolve_params

    for name, value in dataclasses.asdict(resolve_params()).items():
        shown = "(computed by run and submit: the step cache's fingerprint)" if name.endswith("_version") else repr(value)
        click.echo(f"{name:20} {shown}")


@pipeline_group.command("compile")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the YAML (default: pipelines/character_lora.yaml, the file kept in git).")
@click.option("--check", is_flag=True, help="Do not write: exit 1 if pipelines/character_lora.yaml is out of date.")
@click.option("--cpu", is_flag=True, help="Train and evaluate without a GPU (a CPU-only cluster); needs --out.")
def compile_cmd(out: Path | None, check: bool, cpu: bool) -> None:
    """Compile the pipeline to Kubeflow's YAML (upload it in the Kubeflow UI, or use submit)."""
    import tempfile

    committed = _root() / "pipelines" / "character_lora.yaml"
    if cpu and (check or out is None or out.resolve() == committed):
        raise click.UsageError("--cpu writes a variant: name its file with --out (the committed file is the GPU one)")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "pipeline.yaml" if check else (out or committed).resolve()
        code, result = _door(["compile", "--out", str(target), *(["--cpu"] if cpu else [])])
        if code:
            raise click.ClickException("compiling the pipeline failed (see above)")
        if check:
            same = committed.is_file() and committed.read_text(encoding="utf-8") == target.read_text(encoding="utf-8")
            if not same:
                raise click.ClickException(f"{committed} is out of date: run `fitad pipeline compile` and commit it")
            click.echo(f"{committed}: in sync with the code")
            return
    click.echo(f"compiled: {result.get('compiled', target)}")


@pipeline_group.command("run")
@click.option("--local", "local_run", is_flag=True, help="Run every step on this machine with kfp.local.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help=PARAM_HELP)
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("outputs/pipeline"),
              show_default=True, help="Where kfp.local keeps each run's artifacts (and its step cache).")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Reuse the outputs of steps whose inputs did not change (a re-run starts at the failed step).")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="params.yaml the steps read (default: the project's).")
@click.option("--verbose", is_flag=True, help="Show every step's whole log (it always goes to ROOT/last-run.log).")
def run_cmd(local_run: bool, params: tuple[str, ...], root: Path, cache: bool, params_path: Path | None,
            verbose: bool) -> None:
    """Run the whole pipeline locally: each step a subprocess of this Python, artifacts passed between them,
    MLflow runs nested under one pipeline run tagged with the Kubeflow run id, the model registered at the end."""
    from fitad.pipeline.local import latest_run_dir, summarize_run
    from fitad.tracking.store import default_tracking_uri

    if not local_run:
        raise click.UsageError("fitad pipeline run needs --local (runs here); for a cluster: fitad pipeline submit "
                               "--host URL")
    arguments = _arguments(params, params_path, local=True)
    root = root.resolve()
    env = {"FITAD_PARAMS": str((params_path or _root() / "params.yaml").resolve()),
           "MLFLOW_TRACKING_URI": default_tracking_uri()}  # every step reports to one store, wherever it runs
    started = time.time()
    click.echo(f"fitad pipeline: running locally with {arguments}; artifacts under {root}", err=True)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "last-run.log"
    code, result = _door(["run-local", "--root", str(root), "--arguments", json.dumps(arguments),
                          *([] if cache else ["--no-cache"])], env, log=log, verbose=verbose)
    run_dir = latest_run_dir(root, after=started - 1)
    summary = {**(summarize_run(run_dir, result.get("cached", ())) if run_dir else {}),
               "seconds": round(time.time() - started, 1), **{k: v for k, v in result.items() if k != "cached"}}
    click.echo(json.dumps(summary, indent=2))
    if code:
        if not verbose:  # the failing step's own words: the end of its log
            click.echo("".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-40:]), err=True)
        raise click.ClickException(f"the pipeline failed: {result.get('failed', 'see the log above')}; the outputs "
                                   f"of the steps that finished are kept, and a re-run reuses them (whole log: {log})")


@pipeline_group.command("submit")
@click.option("--host", required=True, metavar="URL",
              help="Kubeflow Pipelines API endpoint, e.g. https://kubeflow.example.com/pipeline or "
                   "http://localhost:8080 (kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help=PARAM_HELP)
@click.option("--experiment", default="fitad", show_default=True, help="Kubeflow experiment to file the run under.")
@click.option("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs).")
@click.option("--token", envvar="FITAD_KFP_TOKEN", default=None,
              help="Bearer token for the API. Prefer $FITAD_KFP_TOKEN (a command line is visible to other local "
                   "users), e.g. export FITAD_KFP_TOKEN=$(kubectl create token default-editor -n NS).")
@click.option("--run-name", default=None, help="Name of the run (default: Kubeflow's).")
@click.option("--service-account", default=None, help="Service account of the run's pods (k8s/: fitad-pipeline).")
@click.option("--cache/--no-cache", default=True, show_default=True, help="Let Kubeflow reuse cached steps.")
@click.option("--cpu", is_flag=True, help="Train and evaluate without a GPU (a CPU-only cluster, e.g. k8s/ dev).")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="params.yaml to check the parameters against (default: the project's).")
def submit_cmd(host: str, params: tuple[str, ...], experiment: str, namespace: str | None, token: str | None,
               run_name: str | None, service_account: str | None, cache: bool, cpu: bool,
               params_path: Path | None) -> None:
    """Compile this checkout's pipeline and start a run of it on a Kubeflow Pipelines cluster."""
    arguments = _arguments(params, params_path)
    if arguments["data_version"].startswith(("unlisted-", "unseen-")):
        click.echo(f"fitad pipeline: {arguments['data_uri']} cannot be read from here, so the step cache cannot tell "
                   "whether it changed: fetch and every step after it will run again", err=True)
    args = ["submit", "--host", host, "--experiment", experiment, "--arguments", json.dumps(arguments)]
    for flag, value in (("--namespace", namespace), ("--run-name", run_name), ("--service-account", service_account)):
        if value:
            args += [flag, value]
    code, result = _door(args + ([] if cache else ["--no-cache"]) + (["--cpu"] if cpu else []),
                         {"FITAD_KFP_TOKEN": token} if token else None)
    if code or "run_id" not in result:
        raise click.ClickException(f"submitting to {host} failed: {result.get('error', 'see the log above')}")
    click.echo(f"run {result['run_id']}: {result['url']}")


COMMANDS = [pipeline_group]
