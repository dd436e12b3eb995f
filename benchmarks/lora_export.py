"""Export of production-size adapters (fitad.lora.export); prints one JSON object.

Adapters with the real SD1.5 and FLUX.1-dev module shapes are synthesized (the models are built on the meta
device, so no weights are needed), exported to the kohya format, and parsed back with diffusers'
``lora_state_dict`` to check that every module survives at full scale.

Target: each export (SD1.5 rank 32 on attention, FLUX.1-dev rank 16 on attention) in under 2 s on CPU.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from fitad.lora.export import export_kohya

TARGET_S = 2.0
SD_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
FLUX_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def _sd15_unet():
    from diffusers import UNet2DConditionModel

    # SD1.5's UNet config (runwayml/stable-diffusion-v1-5/unet/config.json), built without weights.
    with torch.device("meta"):
        return UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)


def _flux_transformer():
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):  # FLUX.1-dev's transformer config
        return FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                      attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                                      pooled_projection_dim=768, guidance_embeds=True)


def _write_lora_dir(model, component: str, targets: list[str], rank: int, alpha: float, family: str,
                    out: Path) -> int:
    from diffusers import FluxPipeline, StableDiffusionPipeline
    from peft import LoraConfig

    gen = torch.Generator().manual_seed(0)
    state = {}
    suffixes = tuple("." + t for t in targets)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(suffixes):
            state[f"{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=gen) * 0.01
            state[f"{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=gen) * 0.01
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets).to_dict()
    pipeline = StableDiffusionPipeline if family == "sd15" else FluxPipeline
    pipeline.save_lora_weights(str(out), **{f"{component}_lora_layers": state,
                                            f"{component}_lora_adapter_metadata": config})
    (out / "fitad_lora.json").write_text(json.dumps({"family": family, "base_model": "bench", "rank": rank,
                                                     "alpha": alpha, "trigger": "sks"}), encoding="utf-8")
    return len(state) // 2


def _case(family: str, rank: int, alpha: float, tmp: Path) -> dict:
    from diffusers import FluxPipeline, StableDiffusionPipeline

    model = _sd15_unet() if family == "sd15" else _flux_transformer()
    component = "unet" if family == "sd15" else "transformer"
    lora_dir = tmp / family / "lora"
    modules = _write_lora_dir(model, component, SD_TARGETS if family == "sd15" else FLUX_TARGETS, rank, alpha,
                              family, lora_dir)
    start = time.perf_counter()
    out = export_kohya(lora_dir, tmp / f"{family}.safetensors")
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    if family == "sd15":
        from diffusers.utils import convert_unet_state_dict_to_peft

        parsed, alphas = StableDiffusionPipeline.lora_state_dict(str(out))
        parsed = convert_unet_state_dict_to_peft(parsed)  # kohya names -> PEFT module paths
    else:
        parsed, alphas = FluxPipeline.lora_state_dict(str(out), return_alphas=True)
    parse_s = time.perf_counter() - start
    parsed_modules = len({k.split(".lora_")[0] for k in parsed})
    alpha_values = {float(v) for v in alphas.values()}
    return {"modules": modules, "rank": rank, "alpha": alpha, "size_mb": round(out.stat().st_size / 1e6, 2),
            "export_s": round(export_s, 3), "diffusers_parse_s": round(parse_s, 3),
            "diffusers_modules": parsed_modules, "diffusers_alphas": sorted(alpha_values),
            "ok": parsed_modules == modules and alpha_values == {alpha} and export_s < TARGET_S}


def main() -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"sd15_rank32_alpha16": _case("sd15", 32, 16.0, Path(tmp)),
                  "flux1_dev_rank16_alpha8": _case("flux", 16, 8.0, Path(tmp))}
    result["target_s"] = TARGET_S
    result["ok"] = all(case["ok"] for case in result.values() if isinstance(case, dict))
    return result


if __name__ == "__main__":
    report = main()
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)
