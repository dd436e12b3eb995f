"""The Dockerfile, .dockerignore and `make image`, checked without a Docker daemon: stages and build arguments, the
project install with the extras pyproject.toml defines, the entry point, the non-root user, the cache volume, every
COPY source sent in the build context, and nothing large or secret in that context."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from . import dockerfile_lite as dl
from .conftest import ROOT, dockerfile_label, makefile_variable, project_version, pyproject

REQUIRED_EXTRAS = {"train", "prep", "track", "pipeline", "serve", "cluster"}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def instructions() -> list[dl.Instruction]:
    return dl.parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def patterns() -> list[dl.Pattern]:
    return dl.read_dockerignore((ROOT / ".dockerignore").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def repo_files() -> list[str]:
    """The files git knows of (tracked, plus untracked ones not ignored): what a checkout holds."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.decode(errors='replace').strip()}")
    return sorted({f for f in out.stdout.decode().split("\0") if f and (ROOT / f).is_file()})


def final_stage(instructions) -> dl.Stage:
    return dl.stages(instructions)[-1]


def stage_env(stage: dl.Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.instructions:
        if ins.keyword == "ENV":
            env.update(dl.key_values(ins))
    return env


def project_install(instructions) -> str:
    """The final stage's pip install of the project itself (``.[extras]``)."""
    runs = [ins.args for ins in final_stage(instructions).instructions if ins.keyword == "RUN"]
    for run in runs:
        for part in run.split("&&"):
            if "pip install" in part and '".[' in part:
                return part
    raise AssertionError("no `pip install \".[...]\"` of the project in the final stage")


def extras_named(install: str) -> set[str]:
    inside = install.split('".[', 1)[1].split(']"', 1)[0]
    inside = dl.expand(inside, {"FITAD_VARIANT_EXTRAS": ""})
    return {e.strip() for e in inside.split(",") if e.strip()}


# ---------------------------------------------------------------- the Dockerfile

def test_variant_argument_picks_existing_stages(instructions):
    args = dl.global_args(instructions)
    assert args.get("VARIANT") == "cpu"
    named = {s.name: s for s in dl.stages(instructions) if s.name}
    assert {"base-cpu", "base-cuda"} <= set(named)
    assert named["base-cpu"].image.startswith("python:3.11-slim")
    assert named["base-cuda"].image.startswith("nvidia/cuda:") and "cudnn-runtime" in named["base-cuda"].image
    final = final_stage(instructions)
    for variant in ("cpu", "cuda"):
        assert dl.expand(final.image, {"VARIANT": variant}) in named, f"VARIANT={variant} names no stage"


def test_torch_comes_from_the_variants_index(instructions):
    named = {s.name: s for s in dl.stages(instructions) if s.name}
    cpu, cuda = stage_env(named["base-cpu"]), stage_env(named["base-cuda"])
    assert cpu["TORCH_INDEX_URL"].endswith("/whl/cpu")
    torch_cuda = next(dl.key_values(i)["TORCH_CUDA"] for i in named["base-cuda"].instructions
                      if i.keyword == "ARG" and "TORCH_CUDA" in dl.key_values(i))
    assert dl.expand(cuda["TORCH_INDEX_URL"], {"TORCH_CUDA": torch_cuda}).endswith(f"/whl/{torch_cuda}")
    # the CUDA base and the wheel agree on the CUDA version (cu128 <-> nvidia/cuda:12.8.x)
    major_minor = named["base-cuda"].image.split(":")[1].split(".")[:2]
    assert torch_cuda == "cu" + "".join(major_minor)
    run = " ".join(i.args for i in final_stage(instructions).instructions if i.keyword == "RUN")
    assert '--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in run
    torch_version = next(dl.key_values(i)["TORCH_VERSION"] for i in final_stage(instructions).instructions
                         if i.keyword == "ARG" and "TORCH_VERSION" in dl.key_values(i))
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f'"torch=={torch_version}"' in makefile, "the image's torch differs from the one `make setup` tests with"


def test_project_install_names_the_extras_pyproject_defines(instructions):
    named = extras_named(project_install(instructions))
    defined = set(pyproject()["project"]["optional-dependencies"])
    assert REQUIRED_EXTRAS <= named, f"the image must install {sorted(REQUIRED_EXTRAS)}"
    assert named <= defined, f"extras {sorted(named - defined)} are not defined in pyproject.toml"
    cuda = {s.name: s for s in dl.stages(instructions) if s.name}["base-cuda"]
    assert stage_env(cuda)["FITAD_VARIANT_EXTRAS"] == ",cuda" and "cuda" in defined


def test_entrypoint_is_the_console_script(instructions):
    final = final_stage(instructions)
    entry = [i for i in final.instructions if i.keyword == "ENTRYPOINT"][-1]
    assert entry.args.startswith("["), "ENTRYPOINT must be the exec (JSON) form: signals reach fitad"
    scripts = pyproject()["project"]["scripts"]
    assert entry.words() == ["fitad"] and scripts.get("fitad") == "fitad.cli:main"
    cmd = [i for i in final.instructions if i.keyword == "CMD"][-1]
    assert cmd.words() == ["--help"]


def test_runs_as_non_root_with_caches_on_a_volume(instructions):
    final = final_stage(instructions)
    user = [i for i in final.instructions if i.keyword == "USER"]
    assert user, "no USER: the image would run as root"
    name = user[-1].args.split(":")[0]
    assert name not in ("root", "0") and name == "1000"
    assert any(i.keyword == "RUN" and "useradd --uid 1000" in i.args and " fitad" in i.args
               for i in final.instructions)
    env = stage_env(final)
    assert [i.args for i in final.instructions if i.keyword == "WORKDIR"][-1] == "/app"
    assert [i.args for i in final.instructions if i.keyword == "VOLUME"][-1] == "/cache"
    assert any(i.keyword == "EXPOSE" and i.args == "3000" for i in final.instructions)
    assert env["PYTHONUNBUFFERED"] == "1" and env["FITAD_PARAMS"] == "/app/params.yaml"
    assert "HF_HUB_OFFLINE" not in env and "TRANSFORMERS_OFFLINE" not in env, "a cluster may download models"
    # the cache locations the code reads are all on the volume
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "fitad").rglob("*.py"))
    for variable in ("FITAD_HOME", "U2NET_HOME"):
        assert f'os.environ.get("{variable}"' in sources, f"src/fitad no longer reads {variable}"
    for variable in ("HF_HOME", "FITAD_HOME", "U2NET_HOME", "TORCH_HOME"):
        assert env[variable].startswith("/cache/"), variable


def test_kubeflow_artifact_folders_are_writable_by_the_user(instructions):
    """kfp's launcher writes a step's artifacts under fixed root folders; the image makes them uid 1000's."""
    artifact_types = pytest.importorskip("kfp.dsl.types.artifact_types")
    prefixes = {getattr(artifact_types, n).rstrip("/") for n in dir(artifact_types)
                if n.endswith("_LOCAL_MOUNT_PREFIX")}
    assert prefixes, "kfp names no local mount prefixes"
    run = next(i.args for i in final_stage(instructions).instructions if i.keyword == "RUN" and "useradd" in i.args)
    mkdir = next(part for part in run.split("&&") if "mkdir" in part).split()
    chown = next(part for part in run.split("&&") if "chown" in part).split()
    assert "fitad:fitad" in chown
    for prefix in prefixes:
        assert prefix in mkdir and prefix in chown, f"{prefix} (kfp) is not created for uid 1000"


def test_no_weights_baked_in(instructions):
    text = " ".join(i.args for i in instructions if i.keyword == "RUN").lower()
    for download in ("huggingface-cli download", "snapshot_download", "ensure_tiny", "curl ", "wget "):
        assert download not in text


def test_labels_name_the_image_and_version(instructions):
    assert dockerfile_label("org.opencontainers.image.ref.name") == "ghcr.io/fit-ad/fitad" == makefile_variable("IMAGE")
    assert dockerfile_label("org.opencontainers.image.licenses") == "Apache-2.0" == pyproject()["project"]["license"]
    assert dockerfile_label("org.opencontainers.image.title") == "fitad"
    assert dockerfile_label("org.opencontainers.image.source").startswith("https://")
    version_arg = next(dl.key_values(i)["VERSION"] for i in final_stage(instructions).instructions
                       if i.keyword == "ARG" and "VERSION" in dl.key_values(i))
    assert dl.expand(dockerfile_label("org.opencontainers.image.version"), {"VERSION": version_arg}) \
        == project_version() == pyproject()["project"]["version"]


# ---------------------------------------------------------------- the build context

def copy_sources(instructions) -> list[str]:
    out = []
    for ins in instructions:
        if ins.keyword in ("COPY", "ADD"):
            opts, words = ins.flags()
            if "from" not in opts:
                out += words[:-1]
    return out


def copy_problems(instructions, patterns, repo_files) -> list[str]:
    """COPY sources missing from the repository, or (partly) left out of the build context by .dockerignore."""
    problems = []
    context = set(dl.build_context(ROOT, repo_files, patterns))
    for source in copy_sources(instructions):
        clean = source.rstrip("/")
        if not (ROOT / clean).exists():
            problems.append(f"COPY {source}: not in the repository")
        elif (ROOT / clean).is_dir():
            known = [f for f in repo_files if f.startswith(clean + "/")]
            dropped = [f for f in known if f not in context and not f.endswith((".pyc", ".pyo"))]
            if not known or dropped:
                problems.append(f"COPY {source}: .dockerignore drops {dropped[:5] or 'everything'}")
        elif dl.is_excluded(clean, patterns):
            problems.append(f"COPY {source}: excluded by .dockerignore")
    return problems


def context_problems(patterns, repo_files) -> list[str]:
    """Large, secret-looking or out-of-place files the build context would carry."""
    problems = []
    context = dl.build_context(ROOT, repo_files, patterns)
    # files over 1 MB are allowed only if they are package data the wheel must ship (pyproject's package-data)
    package = ROOT / "src" / "fitad"
    package_data = {str(f.relative_to(ROOT)) for glob in pyproject()["tool"]["setuptools"]["package-data"]["fitad"]
                    for f in package.glob(glob) if f.is_file()}
    problems += [f"{f}: over 1 MB" for f in context if (ROOT / f).stat().st_size > MB and f not in package_data]
    problems += [f"{f}: looks like a secret" for f in context if dl.secret_looking(f)]
    total = sum((ROOT / f).stat().st_size for f in context)
    if total > 20 * MB:
        problems.append(f"the context is {total / MB:.1f} MB")
    for prefix in (".git/", ".venv/", "tests/", "mlflow/", "outputs/", "data/", ".dvc/", ".fitad/", "docs/img/",
                   "k8s/", "benchmarks/"):
        problems += [f"{f}: under {prefix}" for f in context if f.startswith(prefix)]
    return problems


def test_every_copy_source_exists_and_is_sent(instructions, patterns, repo_files):
    assert {"pyproject.toml", "README.md", "src/", "params.yaml", "serving/", "components/", "pipelines/",
            "dvc.yaml"} <= set(copy_sources(instructions))
    assert copy_problems(instructions, patterns, repo_files) == []


def test_context_is_small_and_secret_free(patterns, repo_files):
    context = dl.build_context(ROOT, repo_files, patterns)
    assert "src/fitad/__init__.py" in context and len(context) < len(repo_files)
    assert context_problems(patterns, repo_files) == []


@pytest.mark.parametrize("path", [
    ".git/config", ".venv/bin/python", "mlflow/mlflow.db", "mlflow/mlruns/0/meta.yaml", "data/raw/a.png",
    "outputs/x.png", ".dvc/cache/files/md5/ab/cd", ".fitad/models/tiny-sd15/model_index.json", "docs/img/web-page.png",
    "tests/test_cli.py", ".env", "serving/.env", "serving/.env.production", "src/fitad/key.pem", "components/credentials.json",
    "pipelines/gcp-credentials.json", "src/fitad/model.safetensors", "serving/lora.ckpt", "params.yaml.swp",
    "src/fitad/__pycache__/zoo.cpython-311.pyc", "src/fitad.egg-info/PKG-INFO", "Dockerfile", "Makefile",
])
def test_dockerignore_keeps_out(patterns, path):
    assert dl.is_excluded(path, patterns), f"{path} would be sent to the daemon"


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "params.yaml", "dvc.yaml", "src/fitad/__init__.py",
                                  "src/fitad/assets/fonts/OFL.txt", "serving/service.py", "serving/bentofile.yaml",
                                  "components/train.py", "pipelines/fitad_pipeline.py"])
def test_dockerignore_lets_in(patterns, path):
    assert not dl.is_excluded(path, patterns)


def test_dockerignore_matcher_semantics():
    """moby/patternmatcher's rules, on patterns whose Docker outcome is documented."""
    p = dl.read_dockerignore("# comment\n*\n!src/\n**/__pycache__\n/docs/*.png\n!docs/keep.png\ntemp?\n*/tmp*\n"
                             "**/*.md\n!README.md\n")
    assert [x.text for x in p][:3] == ["*", "!src", "**/__pycache__"]          # comments dropped, "/" cleaned
    assert not dl.is_excluded("src/a/b.py", p)                               # "!src" re-includes the folder
    assert dl.is_excluded("other/b.py", p)                                   # "*" matches the parent folder
    assert dl.is_excluded("src/a/__pycache__/b.pyc", p)                      # "**/" spans folders, parent match
    assert dl.is_excluded("__pycache__/x", p)                                # "**/" also spans zero folders
    assert dl.is_excluded("docs/a.png", p) and not dl.is_excluded("docs/keep.png", p)  # later "!" wins
    assert dl.is_excluded("src/x/y.md", p) and not dl.is_excluded("README.md", p)
    q = dl.read_dockerignore("temp?\n*/tmp*\n")
    assert dl.is_excluded("temp1", q) and not dl.is_excluded("temp12", q)
    assert dl.is_excluded("a/tmpfile", q) and not dl.is_excluded("a/b/tmpfile", q)   # "*" stays in one folder


def test_a_broken_dockerignore_or_dockerfile_is_caught(instructions, repo_files):
    """The COPY check fails when .dockerignore drops what the Dockerfile copies; the USER check when root is back."""
    text = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    broken = dl.read_dockerignore(text + "\nserving/bentofile.yaml\n")
    assert "COPY serving/: .dockerignore drops ['serving/bentofile.yaml']" in copy_problems(
        instructions, broken, repo_files)
    gone = dl.parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8") + "\nCOPY no-such-dir/ x/\n")
    assert "COPY no-such-dir/: not in the repository" in copy_problems(gone, broken, repo_files)
    leaky = dl.read_dockerignore(text + "\n!tests/\n!src/fitad/assets/fonts/FitadGothic-Bold.ttf\n")
    problems = context_problems(leaky, repo_files)
    assert "tests/conftest.py: under tests/" in problems
    rooted = dl.parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8") + "\nUSER root\n")
    with pytest.raises(AssertionError):
        test_runs_as_non_root_with_caches_on_a_volume(rooted)
    no_cluster = dl.parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8").replace(",cluster", ""))
    with pytest.raises(AssertionError, match="must install"):
        test_project_install_names_the_extras_pyproject_defines(no_cluster)


# ---------------------------------------------------------------- make image

def _tool_dir(tmp_path: Path, with_docker: str | None) -> dict:
    """An environment whose PATH holds only what the image target uses, and optionally a fake docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "timeout"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if with_docker is not None:
        (bin_dir / "docker").write_text(f"#!/bin/sh\n{with_docker}\n")
        (bin_dir / "docker").chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def make() -> str:
    found = shutil.which("make")
    if not found or not os.path.exists("/bin/bash"):
        pytest.skip("make (and /bin/bash) are needed to run the Makefile")
    return found


@pytest.mark.parametrize("variant,suffix", [("cpu", ""), ("cuda", "-cuda")])
def test_make_image_tags_with_the_version(make, tmp_path, variant, suffix):
    """With a (fake) working docker, `make image` runs the build with the version tag, the variant and the version."""
    env = _tool_dir(tmp_path, with_docker='[ "$1" = info ] && exit 0; echo "docker $*" >> "$HOME/calls"; exit 0')
    result = subprocess.run([make, "-s", "image", f"VARIANT={variant}"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    call = (tmp_path / "calls").read_text()
    tag = f"ghcr.io/fit-ad/fitad:{project_version()}{suffix}"
    assert f"-t {tag} ." in call and f"--build-arg VARIANT={variant}" in call
    assert f"--build-arg VERSION={project_version()}" in call


@pytest.mark.parametrize("docker,message", [(None, "docker is not installed"),
                                            ("exit 1", "Docker daemon is not reachable")])
def test_make_image_explains_a_missing_docker(make, tmp_path, docker, message):
    env = _tool_dir(tmp_path, with_docker=docker)
    result = subprocess.run([make, "image"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_make_image_refuses_an_unknown_variant(make, tmp_path):
    env = _tool_dir(tmp_path, with_docker="exit 0")
    result = subprocess.run([make, "image", "VARIANT=rocm"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "VARIANT must be cpu or cuda" in result.stdout + result.stderr
