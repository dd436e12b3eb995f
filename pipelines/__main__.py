"""``python -m pipelines compile|run-local|submit``: the door `fitad pipeline` calls after it has checked the
parameters (fitad.pipeline.params). Arguments arrive as JSON; the result goes to stdout as one JSON line."""

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

COMPILED = Path(__file__).resolve().parent / "character_lora.yaml"
TOKEN_ENV = "FITAD_KFP_TOKEN"
RESULT = "@fitad-result "  # marks the one line of stdout that is the door's answer, among the steps' logs


def compile_to(path: Path, gpu: bool = True) -> None:
    from kfp import compiler

    from pipelines.character_lora import build

    compiler.Compiler().compile(build(cluster=True, gpu=gpu), str(path))


class CacheHits(logging.Handler):
    """kfp.local says which tasks it took from the cache only in an INFO log record: collect their names."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.tasks: list = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"Task (\S+) cache hit", record.getMessage())
        if found:
            self.tasks.append(found.group(1))


def run_local(arguments: dict, root: str, cache: bool, hits: CacheHits) -> None:
    """Every step in a subprocess of this Python (no venv per step), artifacts under ``root``."""
    from kfp import local

    from pipelines.character_lora import build

    logging.getLogger().addHandler(hits)
    logging.getLogger().setLevel(logging.INFO)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True,
               enable_caching=cache, cache_root=str(Path(root) / ".kfp_cache"))
    build(cluster=False)(**arguments)


def submit(arguments: dict, opts: argparse.Namespace) -> dict:
    import kfp

    # the token comes through the environment: a command line is visible to every local user (ps)
    client = kfp.Client(host=opts.host, namespace=opts.namespace, existing_token=os.environ.get(TOKEN_ENV) or None)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "character_lora.yaml"
        compile_to(package, gpu=opts.gpu)  # this checkout's pipeline is what is submitted, not an older file
        result = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=opts.run_name, experiment_name=opts.experiment,
            namespace=opts.namespace, service_account=opts.service_account,
            enable_caching=None if opts.cache else False)  # None: each step's own setting (register: never)
    return {"run_id": result.run_id, "url": f"{opts.host.rstrip('/')}/#/runs/details/{result.run_id}"}


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("compile")
    build.add_argument("--out", default=str(COMPILED))
    local = sub.add_parser("run-local")
    local.add_argument("--root", required=True)
    remote = sub.add_parser("submit")
    remote.add_argument("--host", required=True)
    for name in ("--namespace", "--run-name", "--experiment", "--service-account"):
        remote.add_argument(name, default=None)
    for p in (build, remote):
        p.add_argument("--cpu", dest="gpu", action="store_false", help="train and evaluate without a GPU")
    for p in (local, remote):
        p.add_argument("--arguments", default="{}", help="the run's parameters as a JSON object")
        p.add_argument("--no-cache", dest="cache", action="store_false")
    opts = parser.parse_args(argv)
    if opts.command == "compile":
        compile_to(Path(opts.out), gpu=opts.gpu)
        print(RESULT + json.dumps({"compiled": opts.out}))
        return 0
    arguments = json.loads(opts.arguments)
    if opts.command == "run-local":
        hits = CacheHits()
        try:
            run_local(arguments, opts.root, opts.cache, hits)
        except RuntimeError as exc:  # kfp.local: a task failed; its log is above
            print(RESULT + json.dumps({"failed": str(exc), "cached": hits.tasks}))
            return 1
        print(RESULT + json.dumps({"succeeded": True, "cached": hits.tasks}))
        return 0
    try:
        print(RESULT + json.dumps(submit(arguments, opts)))
    except Exception as exc:  # an unreachable host, a refused token, an API error: one line, not a traceback
        print(RESULT + json.dumps({"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:500]}"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
