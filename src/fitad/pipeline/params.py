"""The character-LoRA pipeline's parameters, checked before anything is compiled, submitted or run.

:class:`PipelineParams` is what a pipeline run takes; the Kubeflow UI shows the same names, types and defaults
(the embedded defaults of params.yaml, a test keeps them equal). ``fitad pipeline run|submit`` sends every
parameter, resolved by :func:`resolve_params`: params.yaml's sections under the chosen profile
(``--param profile=production`` gives the production models, sizes and gate floors), then the ``--param``
values. :func:`check_params` then builds each stage's own config dataclass, so a bad value (rank 0, an unknown
family, a threshold out of range) fails on the submitting machine with the stage's own message, not in a pod.
An empty string (base_model, class_word, model_name, profile) means "params.yaml's value".
"""

from __future__ import annotations

import dataclasses
import os
import typing
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

from fitad.config import ConfigError, check_choice, check_range, from_mapping, load_section, parse_overrides

FAMILIES = ("sd15", "flux")


@dataclasses.dataclass
class PipelineParams:
    """Parameters of the ``character_lora`` pipeline."""

    SECTION: typing.ClassVar[str] = "pipeline"
    data_uri: str = "synth:8"        # synth:N (N synthetic panels), a folder (a mounted volume), s3://bucket/prefix
    trigger: str = "sks"             # first word of every caption; the registered model is fitad-<trigger>
    class_word: str = ""             # word after the trigger, e.g. girl
    family: str = "sd15"             # sd15 | flux
    base_model: str = ""             # hub ID, local dir or tiny model; "": the family's params.yaml section
    rank: int = 8
    steps: int = 30
    resolution: int = 128            # prep crops and training side
    learning_rate: float = 1e-3
    captioner: str = "template"      # template | blip
    text_box_threshold: float = 0.4  # text detector box score threshold
    min_clip_t: float = 0.0          # gate floors (the embedded tiny CLIP's; production: 0.20 / 0.60)
    min_clip_i: float = 0.5
    model_name: str = ""             # registered model; "": fitad-<trigger>
    experiment: str = "fitad"        # MLflow experiment
    profile: str = ""                # a params.yaml profile for everything else (production); "": params.yaml's
    # filled in by `fitad pipeline run|submit` (fitad.pipeline.fingerprint): the step cache's view of the data
    # at data_uri and of the code and settings; a change makes the cached steps run again
    data_version: str = ""
    prep_version: str = ""
    config_version: str = ""

    def __post_init__(self) -> None:
        s = self.SECTION
        check_choice(s, "family", self.family, FAMILIES)
        uri = self.data_uri.strip()
        if not uri:
            raise ConfigError(f"{s}.data_uri: a value is required (synth:N, a folder or s3://bucket/prefix)")
        if uri.startswith("synth:"):
            count = uri[len("synth:"):]
            if not count.isdigit():
                raise ConfigError(f"{s}.data_uri = {uri!r}: synth:N takes a number of panels, e.g. synth:8")
            check_range(s, "data_uri (synth panels)", int(count), lo=1, hi=10_000)
        elif "://" in uri and not uri.startswith(("s3://", "file://")):
            raise ConfigError(f"{s}.data_uri = {uri!r}: the scheme is not supported "
                              "(synth:N, a folder path, file:// or s3://bucket/prefix)")
        if not self.trigger.strip() or any(c.isspace() for c in self.trigger):
            raise ConfigError(f"{s}.trigger = {self.trigger!r}: one word, no spaces")
        check_range(s, "rank", self.rank, lo=1, hi=1024)
        check_range(s, "steps", self.steps, lo=1)
        check_range(s, "resolution", self.resolution, lo=64, hi=4096)
        check_range(s, "learning_rate", self.learning_rate, lo=0.0, lo_open=True, hi=1.0)

    def overrides(self, only: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per params.yaml section, the keys this run sets ("" strings are left to the section); ``only``: just
        these parameters (a step sets what it was given, the rest stays params.yaml's)."""
        keep = set(only) if only is not None else None

        def given(**values: Any) -> dict[str, Any]:
            return {k: v for k, v in values.items() if v != "" and (keep is None or k in keep)}

        train = given(base_model=self.base_model, rank=self.rank, steps=self.steps, resolution=self.resolution,
                      learning_rate=self.learning_rate, trigger=self.trigger)
        return {
            "prep": given(trigger=self.trigger, class_word=self.class_word, captioner=self.captioner,
                          text_box_threshold=self.text_box_threshold, resolution=self.resolution),
            "train_flux" if self.family == "flux" else "train": train,
            "registry": given(model_name=self.model_name, experiment=self.experiment),
            "gate": given(min_clip_t=self.min_clip_t, min_clip_i=self.min_clip_i),
        }

    def stage_configs(self, params_path: str | os.PathLike | None = None,
                      only: Iterable[str] | None = None) -> dict[str, Any]:
        """Each stage's config: params.yaml (this run's profile) with this run's values laid over it."""
        sets = self.overrides(only)
        with profile_env(self.profile):
            return {stage: load_section(cls, params_path, sets.get(cls.SECTION, {}), cls.SECTION)
                    for stage, cls in _stage_classes(self.family).items()}


def _stage_classes(family: str) -> dict[str, type]:
    from fitad.evaluate.config import EvalConfig
    from fitad.prep.config import PrepConfig
    from fitad.tracking.config import GateConfig, RegistryConfig
    from fitad.train.config import CONFIG_BY_FAMILY

    return {"prep": PrepConfig, "train": CONFIG_BY_FAMILY[family], "evaluate": EvalConfig,
            "registry": RegistryConfig, "gate": GateConfig}


@contextmanager
def profile_env(profile: str | None) -> Iterator[None]:
    """Make ``profile`` the active params.yaml profile (``$FITAD_PROFILE``) for the duration."""
    if not profile:
        yield
        return
    before = os.environ.get("FITAD_PROFILE")
    os.environ["FITAD_PROFILE"] = profile
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FITAD_PROFILE", None)
        else:
            os.environ["FITAD_PROFILE"] = before


def resolve_params(pairs: Iterable[str] = (), params_path: str | os.PathLike | None = None) -> PipelineParams:
    """Every parameter of a run: params.yaml's values under the chosen profile, then ``pairs`` (``rank=16``)."""
    given = parse_overrides(pairs)
    probe = from_mapping(PipelineParams, given, PipelineParams.SECTION)  # names, types and ranges of what was given
    classes = _stage_classes(probe.family)
    with profile_env(probe.profile):
        prep, train, gate, registry = (load_section(classes[k], params_path) for k in ("prep", "train", "gate",
                                                                                        "registry"))
    # $FITAD_PROFILE travels with the run (a pod does not have this shell's environment; params.yaml's own
    # `profile:` key is in the image too)
    base = {"profile": probe.profile or os.environ.get("FITAD_PROFILE", ""), "class_word": prep.class_word,
            "rank": train.rank, "steps": train.steps, "resolution": train.resolution,
            "learning_rate": train.learning_rate, "captioner": prep.captioner,
            "text_box_threshold": prep.text_box_threshold, "min_clip_t": gate.min_clip_t,
            "min_clip_i": gate.min_clip_i, "experiment": registry.experiment}
    return from_mapping(PipelineParams, {**base, **given}, PipelineParams.SECTION)


def check_params(arguments: Mapping[str, Any], params_path: str | os.PathLike | None = None) -> PipelineParams:
    """Validate a run's arguments: the fields, then every stage's config built from them."""
    params = from_mapping(PipelineParams, dict(arguments), PipelineParams.SECTION)
    params.stage_configs(params_path)
    return params
