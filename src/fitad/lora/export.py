"""Export a trained adapter directory to one ``.safetensors`` file for WebUI (A1111/Forge), ComfyUI and diffusers.

Input (written by training), ``LORA_DIR``:

* ``pytorch_lora_weights.safetensors``: the diffusers-native LoRA state dict (``unet.…``/``transformer.…``/
  ``text_encoder.…`` keys with ``lora_A``/``lora_B``), its PEFT config in the ``lora_adapter_metadata`` header.
* ``fitad_lora.json``: family, base model, adapter type, rank, alpha, trigger word, …
* ``peft/`` (LoKr only): PEFT ``save_pretrained`` output, either directly (the denoiser) or one sub-folder per
  component (``peft/unet``, ``peft/transformer``, ``peft/text_encoder``).

``LORA_DIR`` itself is never modified: it stays the diffusers-native copy of the adapter.

Output key formats (``format="kohya"``):

SD1.5 family -- the kohya-ss sd-scripts names for SD1.x, which diffusers (its kohya converter), A1111 and
ComfyUI all read::

    lora_unet_<module path, '.' -> '_'>.lora_down.weight   = PEFT lora_A
    lora_unet_<module path, '.' -> '_'>.lora_up.weight     = PEFT lora_B
    lora_unet_<module path, '.' -> '_'>.alpha              = 0-dim float32, the module's alpha
    lora_te_text_model_<...>.{lora_down,lora_up}.weight, .alpha   (text encoder)

kohya scales a module by ``alpha / rank`` exactly as PEFT does, so ``.alpha`` holds the real alpha (for rsLoRA,
where PEFT scales by ``alpha / sqrt(rank)``, the equivalent ``alpha * sqrt(rank)``).

FLUX -- the ``transformer.``-prefixed diffusers/PEFT form with a per-module ``.alpha``::

    transformer.<module path>.lora_A.weight / .lora_B.weight / .alpha
    text_encoder.text_model.<module path>.lora_A.weight / .lora_B.weight / .alpha

diffusers' FLUX loader reads it natively (the ``.alpha`` keys become its network alphas) and ComfyUI/Forge map
``transformer.<diffusers path>`` keys (``lora_A``/``lora_B`` plus ``.alpha``) onto their fused FLUX weights.
The kohya FLUX form (``lora_unet_double_blocks_0_img_attn_qkv``) was not chosen: it needs q/k/v fused into one
block-diagonal LoRA (3x the rank, alpha rescaled), and diffusers' converter for it hard-codes FLUX.1-dev's widths
and block counts, so it neither round-trips exactly nor works for other FLUX-architecture models.

LoKr -- LyCORIS names (``<module>.lokr_w1``, ``lokr_w1_a``/``_b``, ``lokr_w2``/``lokr_w2_a``/``_b``,
``lokr_t2``, ``.alpha``) on the same module names as LoRA (``lora_unet_…``/``lora_te_…`` for SD, ``transformer.…``
for FLUX), which ComfyUI, A1111 and the ``lycoris`` package read. LyCORIS readers scale by ``alpha / dim`` only
when a factor is rank-decomposed and by 1 otherwise; PEFT always scales by ``alpha / r``. So ``.alpha`` is the
real alpha where the readers apply it; otherwise the scale is multiplied into ``lokr_w1`` and ``.alpha`` holds
the rank (ignored there, but LyCORIS' own loader needs the key). diffusers 0.42 loads neither SD1.5 nor FLUX.1
LoKr files (``fitad.lora.load`` does, through PEFT).

DoRA -- refused for the kohya format: kohya/LyCORIS carry the magnitude as ``.dora_scale``, but diffusers
(0.42) drops ``dora_scale`` keys when it loads such a file, so the export would not reproduce the adapter there.
``format="diffusers"`` keeps DoRA (``lora_magnitude_vector``), which diffusers loads.

``format="diffusers"`` writes the diffusers-native state dict (its PEFT config header kept) plus the
descriptive metadata below, as one file that ``pipe.load_lora_weights(file)`` reads. One rename: a text-encoder
DoRA magnitude is written as ``….lora_magnitude_vector.weight``, the name transformers' adapter loader expects;
under the native name (no ``.weight``) diffusers 0.42 + transformers 5 silently re-initialise it.

Metadata (strings, a safetensors requirement; see :mod:`fitad.lora.metadata`): kohya's ``ss_*`` keys (network,
base model, training settings, dataset tag frequencies, ...), the ``sshs_*`` hashes A1111 uses, Stability AI's
``modelspec.*`` and Fit-AD's ``fitad_*`` provenance. Key names, file names and alpha rules live in
:mod:`fitad.lora.format`, reading and writing files in :mod:`fitad.lora.files`, the converters in
:mod:`fitad.lora.convert`; this module holds the export config and the entry points.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import ClassVar, Iterable

from fitad.config import check_choice
from fitad.lora.convert import Converted, cast, convert_lokr, convert_lora_to_kohya
from fitad.lora.files import (LoraInfo, adapter_configs, group_lora_modules, load_safetensors, read_lora_info,
                              read_peft_dir, read_train_summary, save_safetensors_atomic)
from fitad.lora.format import (ADAPTER_METADATA_KEY, ADAPTER_TYPES, BASE_MODEL_VERSION, DENOISER, FAMILIES,
                               INFO_FILE, KOHYA_PREFIX, LOKR_PARAMS, PEFT_CONFIG_FILE, PEFT_DIR, PEFT_WEIGHTS_FILE,
                               WEIGHTS_FILE, LoraFormatError, fix_text_encoder_dora_keys, flux_module_name,
                               has_text_encoder_dora, kohya_alpha, kohya_module_name, lokr_lycoris_tensors,
                               lokr_rank_alpha, most_common, pattern_value, split_component)
from fitad.lora.metadata import add_hashes, export_metadata

log = logging.getLogger(__name__)

FORMATS = ("kohya", "diffusers")
DTYPES = ("keep", "float16", "bfloat16", "float32")

ExportError = LoraFormatError  # the name callers catch: the adapter cannot be read or exported


# ---------------------------------------------------------------- config and records

@dataclasses.dataclass
class ExportConfig:
    """How ``fitad export`` writes the adapter (``export:`` section of params.yaml)."""

    SECTION: ClassVar[str] = "export"
    format: str = "kohya"        # kohya: WebUI/ComfyUI key names; diffusers: the native PEFT keys, one file
    dtype: str = "keep"          # weight dtype in the file; .alpha stays float32
    output_name: str | None = None  # ss_output_name; default: the output file's stem

    def __post_init__(self) -> None:
        check_choice(self.SECTION, "format", self.format, FORMATS)
        check_choice(self.SECTION, "dtype", self.dtype, DTYPES)


@dataclasses.dataclass
class ExportResult:
    """What was written."""

    path: Path
    format: str
    family: str
    adapter_type: str
    key_count: int
    module_count: int
    rank: int
    alpha: float
    size_bytes: int

    def summary(self) -> str:
        return (f"wrote {self.path} ({self.format}, {self.family} {self.adapter_type}): {self.key_count} keys, "
                f"{self.module_count} modules, rank {self.rank}, alpha {self.alpha:g}, "
                f"{self.size_bytes / 2**20:.2f} MiB")


def default_output_path(lora_dir: str | os.PathLike, fmt: str) -> Path:
    """Beside LORA_DIR (not inside: diffusers would then see two weight files there).

    Training writes ``RUN/lora/``; the file is then ``RUN/RUN.safetensors``, since WebUI lists LoRAs by file name.
    """
    lora_dir = Path(lora_dir).resolve()
    stem = lora_dir.parent.name if lora_dir.name == "lora" and lora_dir.parent.name else lora_dir.name
    suffix = "" if fmt == "kohya" else ".diffusers"
    return lora_dir.parent / f"{stem}{suffix}.safetensors"


# ---------------------------------------------------------------- preparing the tensors

def _infer_family(modules: Iterable[tuple[str, str]], source: Path) -> str:
    components = {component for component, _ in modules}
    if "unet" in components:
        return "sd15"
    if "transformer" in components:
        return "flux"
    raise ExportError(f"{source}: cannot tell the model family from components {sorted(components)} "
                      f"and {INFO_FILE} is missing")


@dataclasses.dataclass
class _Prepared:
    info: LoraInfo
    adapter_type: str
    tensors: dict
    header: dict[str, str]       # header keys carried over from the source (diffusers format)
    converted: Converted         # per-module ranks and alphas


def _prepare_lokr(config: ExportConfig, lora_dir: Path, info: LoraInfo | None) -> _Prepared:
    if info is None:
        raise ExportError(f"{lora_dir / INFO_FILE}: missing; needed to read a LoKr adapter")
    if config.format == "diffusers":
        raise ExportError(f"{lora_dir}: a LoKr adapter's diffusers-native form is the PEFT folder "
                          f"{lora_dir / PEFT_DIR} itself; use --format kohya for a single file")
    components = read_peft_dir(lora_dir, info.family)
    converted = convert_lokr(components, info.family, config.dtype, source=lora_dir / PEFT_DIR)
    return _Prepared(info, "lokr", converted.tensors, {}, converted)


def _prepare_lora(config: ExportConfig, lora_dir: Path, info: LoraInfo | None) -> _Prepared:
    weights = lora_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{weights}: missing (training writes the diffusers LoRA weights there)")
    state, file_meta = load_safetensors(weights)
    if not state:
        raise ExportError(f"{weights}: holds no tensors")
    modules = group_lora_modules(state, weights)
    if info is None:
        family = _infer_family(modules, weights)
        log.warning("%s missing: exporting as family %s with alpha from the weights header",
                    lora_dir / INFO_FILE, family)
        info = LoraInfo(family=family)
    allowed = {DENOISER[info.family], "text_encoder"}
    stray = sorted({c for c, _ in modules} - allowed)
    if stray:
        raise ExportError(f"{weights}: components {stray} do not belong to a {info.family} adapter "
                          f"(expected {sorted(allowed)}); is family in {INFO_FILE} right?")
    configs = adapter_configs(file_meta, weights)
    if not configs and info.alpha is None:
        log.warning("%s: no PEFT config header and no alpha in %s; assuming alpha = rank", weights, INFO_FILE)
    is_dora = any("lora_magnitude_vector" in p for p in modules.values())
    adapter_type = "dora" if is_dora else info.adapter_type
    if config.format == "kohya":
        converted = convert_lora_to_kohya(modules, info.family, configs, info.alpha, config.dtype, weights)
        return _Prepared(info, adapter_type, converted.tensors, {}, converted)
    ranks = [int(p["lora_A.weight"].shape[0]) for p in modules.values()]
    alphas = [kohya_alpha(m, r, configs.get(c), info.alpha) for (c, m), r in zip(modules, ranks)]
    tensors = {k: cast(v, config.dtype) for k, v in fix_text_encoder_dora_keys(state).items()}
    header = {k: v for k, v in file_meta.items() if k == ADAPTER_METADATA_KEY}
    return _Prepared(info, adapter_type, tensors, header, Converted({}, ranks, alphas))


# ---------------------------------------------------------------- entry points

def run(config: ExportConfig, lora_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> ExportResult:
    """Export ``lora_dir`` as configured; the one entry point behind ``fitad export``."""
    lora_dir = Path(lora_dir)
    if not lora_dir.is_dir():
        raise ExportError(f"{lora_dir}: LoRA directory does not exist")
    out_path = Path(out) if out is not None else default_output_path(lora_dir, config.format)
    if out_path.resolve().parent == lora_dir.resolve():
        raise ExportError(f"{out_path}: write the export outside {lora_dir} (it keeps only the native weights)")
    info = read_lora_info(lora_dir)
    prepare = _prepare_lokr if info is not None and info.adapter_type == "lokr" else _prepare_lora
    prepared = prepare(config, lora_dir, info)
    rank = most_common(prepared.converted.ranks)
    alpha = most_common(prepared.converted.alphas)
    metadata = export_metadata(prepared.info, prepared.adapter_type, rank, alpha,
                               config.output_name or out_path.stem, config.format,
                               summary=read_train_summary(lora_dir), exported_at=time.time())
    metadata = {"format": "pt", **prepared.header, **add_hashes(prepared.tensors, metadata)}
    save_safetensors_atomic(prepared.tensors, metadata, out_path)
    return ExportResult(path=out_path, format=config.format, family=prepared.info.family,
                        adapter_type=prepared.adapter_type, key_count=len(prepared.tensors),
                        module_count=len(prepared.converted.ranks), rank=rank, alpha=alpha,
                        size_bytes=out_path.stat().st_size)


def export_kohya(lora_dir: str | os.PathLike, out_file: str | os.PathLike | None = None, *,
                 dtype: str = "keep", output_name: str | None = None) -> Path:
    """Export ``lora_dir`` to one kohya/WebUI ``.safetensors`` file; returns its path."""
    return run(ExportConfig(format="kohya", dtype=dtype, output_name=output_name), lora_dir, out_file).path


def export_diffusers(lora_dir: str | os.PathLike, out_file: str | os.PathLike | None = None, *,
                     dtype: str = "keep", output_name: str | None = None) -> Path:
    """Export ``lora_dir`` as one diffusers-native ``.safetensors`` file (PEFT config header kept)."""
    return run(ExportConfig(format="diffusers", dtype=dtype, output_name=output_name), lora_dir, out_file).path


__all__ = [
    # export
    "ExportConfig", "ExportError", "ExportResult", "FORMATS", "DTYPES", "run", "export_kohya", "export_diffusers",
    "default_output_path", "export_metadata",
    # re-exported from fitad.lora.format / .files / .convert (their historical home was this module)
    "WEIGHTS_FILE", "INFO_FILE", "PEFT_DIR", "PEFT_CONFIG_FILE", "PEFT_WEIGHTS_FILE", "ADAPTER_METADATA_KEY",
    "FAMILIES", "ADAPTER_TYPES", "BASE_MODEL_VERSION", "DENOISER", "KOHYA_PREFIX", "LOKR_PARAMS",
    "LoraInfo", "read_lora_info", "load_safetensors", "save_safetensors_atomic", "split_component",
    "group_lora_modules", "adapter_configs", "read_peft_dir", "fix_text_encoder_dora_keys", "has_text_encoder_dora",
    "kohya_module_name", "flux_module_name", "pattern_value", "kohya_alpha", "most_common", "lokr_rank_alpha",
    "lokr_lycoris_tensors", "convert_lora_to_kohya", "convert_lokr",
]
