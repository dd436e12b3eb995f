"""Tiny random models of the real architectures, for offline tests and the demo.

Every model here is a real diffusers/transformers class built from a shrunk config and written with
``save_pretrained``, so the loading, training and export code paths that run on it are the ones that
run on the real weights; only the weights are random (seeded, so a build is deterministic).

``ensure_tiny(name)`` builds on demand and caches under ``$FITAD_HOME/models`` (default
``./.fitad/models``). ``resolve_model(name_or_path)`` is what every stage calls on a configured base
model: tiny names map to their cached directory, local directories and hub IDs pass through.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

TINY_NAMES = ("tiny-sd15", "tiny-sd15-inpaint", "tiny-flux", "tiny-blip", "tiny-clip", "tiny-controlnet")
SEED = 0
# Bump when a builder changes: cached models from an older recipe are rebuilt on demand.
RECIPE_VERSION = 3  # 3: tiny-controlnet reacts to its control image
_ASSETS = Path(__file__).parent / "assets"
_COMPLETE = ".fitad-complete"


def fitad_home() -> Path:
    """Root of Fit-AD's local caches: ``$FITAD_HOME`` or ``./.fitad``."""
    return Path(os.environ.get("FITAD_HOME", ".fitad"))


def models_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root is not None else fitad_home() / "models"


# ---------------------------------------------------------------- tokenizers

def tiny_clip_tokenizer():
    """CLIPTokenizer from the tiny byte-level BPE vocab kept in ``assets/tiny_clip_bpe``."""
    from transformers import CLIPTokenizer

    vocab = json.loads((_ASSETS / "tiny_clip_bpe" / "vocab.json").read_text(encoding="utf-8"))
    lines = (_ASSETS / "tiny_clip_bpe" / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#")]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def tiny_t5_tokenizer():
    """T5 (unigram) tokenizer over the CLIP vocab's word pieces; enough for prompts in tests."""
    from transformers import T5Tokenizer

    clip_vocab = json.loads((_ASSETS / "tiny_clip_bpe" / "vocab.json").read_text(encoding="utf-8"))
    pieces = sorted({t.replace("</w>", "") for t in clip_vocab if t.isascii() and t.isprintable()
                     and not t.startswith("<|")} - {""})
    # Unigram scores favour longer pieces so whole words win over letters.
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + p, -10.0 + 0.5 * len(p)) for p in pieces]
    vocab += [(p, -12.0 + 0.5 * len(p)) for p in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def tiny_wordpiece_tokenizer():
    """BertTokenizer with a small word-piece vocab, for the tiny BLIP captioner."""
    from transformers import BertTokenizer

    words = ("a an the of with on in and photo picture drawing anime manga girl boy man woman person "
             "character standing sitting white black red blue green background table bottle product "
             "holding smiling hair dress shirt comic panel cartoon illustration").split()
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + words + letters
    tokens += ["##" + c for c in letters]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tok = BertTokenizer(vocab=vocab, model_max_length=64)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    return tok


# ---------------------------------------------------------------- model configs

def _clip_text_config(vocab_size: int, layers: int = 3):
    from transformers import CLIPTextConfig

    # >= 2 layers so clip skip 2 (penultimate hidden state) differs from the last layer's output.
    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=77,
                          projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                          hidden_act="quick_gelu")


def _vae(latent_channels: int, flux: bool = False):
    from diffusers import AutoencoderKL

    # Four resolution levels give the real 8x down-sampling factor. Widths are the real VAE's
    # (128, 256, 512, 512) shrunk by 8 and the depth is kept, about the UNet's shrink factor, so the
    # VAE's share of a training step (what latent caching saves) resembles SD1.5's.
    kwargs = dict(in_channels=3, out_channels=3, latent_channels=latent_channels,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(16, 32, 64, 64), layers_per_block=2, norm_num_groups=16,
                  sample_size=64)
    if flux:  # FLUX's VAE has no quant convs and shifts/scales its latents
        kwargs.update(use_quant_conv=False, use_post_quant_conv=False,
                      scaling_factor=0.3611, shift_factor=0.1159)
    else:
        kwargs.update(scaling_factor=0.18215)
    return AutoencoderKL(**kwargs)


def _sd_unet(in_channels: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)


def _sd_scheduler_config() -> dict:
    # The SD1.5 training schedule (scaled_linear betas); prediction type epsilon like SD1.5.
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                steps_offset=1, prediction_type="epsilon")


# ---------------------------------------------------------------- builders

def _build_sd(out: Path, inpaint: bool) -> None:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from transformers import CLIPTextModel

    torch.manual_seed(SEED)
    tokenizer = tiny_clip_tokenizer()
    unet = _sd_unet(9 if inpaint else 4)
    vae = _vae(4)
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer)))
    scheduler = DDIMScheduler(**_sd_scheduler_config())
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)


def _build_flux(out: Path) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(SEED)
    tokenizer = tiny_clip_tokenizer()
    tokenizer_2 = tiny_t5_tokenizer()
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer), layers=2))
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=64,
                                             num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                                             pad_token_id=0, eos_token_id=1))
    # in_channels = 16 latent channels x 2x2 packing; rope axes sum to the head dim.
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    vae = _vae(16, flux=True)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)
    pipe.save_pretrained(out, safe_serialization=True)


def _build_blip(out: Path) -> None:
    import torch
    from transformers import (BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    torch.manual_seed(SEED)
    tokenizer = tiny_wordpiece_tokenizer()
    text_config = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                       encoder_hidden_size=32, bos_token_id=tokenizer.bos_token_id,
                       pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id,
                       eos_token_id=tokenizer.sep_token_id)
    vision_config = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         image_size=32, patch_size=8, projection_dim=32)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text_config, vision_config=vision_config,
                                                    projection_dim=32))
    model.generation_config.max_length = 20
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)


def _build_clip(out: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(SEED)
    tokenizer = tiny_clip_tokenizer()
    text_config = _clip_text_config(len(tokenizer), layers=2).to_dict()
    vision_config = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         image_size=32, patch_size=8, projection_dim=32)
    model = CLIPModel(CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=32))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)


def _build_controlnet(out: Path) -> None:
    """A ControlNet for tiny-sd15 (and its inpaint twin): the UNet's encoder half plus zero convolutions."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(SEED)
    controlnet = ControlNetModel.from_unet(_sd_unet(4))
    # A fresh ControlNet is a no-op by design (zero convs, zero conv_out) and its default init fades the guide
    # through the conditioning embedding: He-initialise the embedding and give the zero convs small weights, so
    # a different control image visibly changes the output, as a trained ControlNet's does.
    with torch.no_grad():
        embedding = controlnet.controlnet_cond_embedding
        for conv in [embedding.conv_in, *embedding.blocks]:
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        embedding.conv_out.weight.normal_(0.0, 0.05)
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            module.weight.normal_(0.0, 0.05)
    controlnet.save_pretrained(out, safe_serialization=True)


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-sd15": lambda out: _build_sd(out, inpaint=False),
    "tiny-sd15-inpaint": lambda out: _build_sd(out, inpaint=True),
    "tiny-flux": _build_flux,
    "tiny-blip": _build_blip,
    "tiny-clip": _build_clip,
    "tiny-controlnet": _build_controlnet,
}


def build_tiny(name: str, out_dir: str | os.PathLike) -> Path:
    """Build tiny model ``name`` into ``out_dir`` (replaced atomically: built in a temp dir, then renamed)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {list(TINY_NAMES)}")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        _BUILDERS[name](tmp)
        (tmp / _COMPLETE).write_text(json.dumps({"name": name, "seed": SEED, "recipe": RECIPE_VERSION}),
                                     encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_tiny(name: str, root: str | os.PathLike | None = None) -> Path:
    """Directory of tiny model ``name`` under ``root`` (default cache), building it if missing."""
    out = models_root(root) / name
    if not _is_current(out):
        build_tiny(name, out)
    return out


def _is_current(model_dir: Path) -> bool:
    """True when ``model_dir`` was completely built by this version of the recipe."""
    try:
        marker = json.loads((model_dir / _COMPLETE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("recipe") == RECIPE_VERSION


def build_all(root: str | os.PathLike | None = None, names: tuple[str, ...] = TINY_NAMES,
              force: bool = False, progress: Callable[[str, float], None] | None = None) -> dict[str, Path]:
    """Build (or reuse) several tiny models; ``progress(name, seconds)`` is called after each."""
    out: dict[str, Path] = {}
    for name in names:
        start = time.perf_counter()
        target = models_root(root) / name
        out[name] = build_tiny(name, target) if force else ensure_tiny(name, root)
        if progress:
            progress(name, time.perf_counter() - start)
    return out


def resolve_model(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """What to hand to ``from_pretrained``: a tiny model's directory, a local dir, or a hub model ID.

    A path that looks local (absolute, ./ or ../, or an existing directory) but does not exist raises
    FileNotFoundError here, so a typo is reported before any loading starts.
    """
    text = str(name_or_path)
    if text in _BUILDERS:
        return str(ensure_tiny(text, root))
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or os.sep + os.sep in text:
        raise FileNotFoundError(f"model directory {text!r} does not exist")
    return text  # a hub model ID such as "stablediffusionapi/anything-v5"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def describe_missing_model(name_or_path: str, exc: Exception) -> str:
    """A clear message for a base model that could not be loaded (offline hub, missing files)."""
    hint = (" The model hub is not reachable (HF_HUB_OFFLINE=1): download the model on a connected machine "
            "and point the config at its local directory, or use a tiny model (" + ", ".join(TINY_NAMES) + ")."
            if hub_offline() else "")
    return f"could not load model {name_or_path!r}: {type(exc).__name__}: {exc}.{hint}"


# ---------------------------------------------------------------- adapters

SD_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
FLUX_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


def build_tiny_lora(out_dir: str | os.PathLike, *, family: str = "sd15", rank: int = 4,
                    alpha: float | None = None, seed: int = 0, targets: tuple[str, ...] | None = None,
                    trigger: str = "sks", root: str | os.PathLike | None = None) -> Path:
    """Write a LORA_DIR (the layout training writes) with random, non-zero weights for a tiny base.

    For tests and benchmarks that need adapters without training one: ``lora_B`` is random too (training
    starts it at zero), so the adapter visibly changes what the base renders. Different seeds give
    different adapters of the same shape.
    """
    import torch
    from diffusers import FluxPipeline, StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    if family not in ("sd15", "flux"):
        raise ValueError(f"family must be 'sd15' or 'flux', got {family!r}")
    base = "tiny-sd15" if family == "sd15" else "tiny-flux"
    denoiser_name = "unet" if family == "sd15" else "transformer"
    base_dir = ensure_tiny(base, root)
    subfolder_cls = StableDiffusionPipeline if family == "sd15" else FluxPipeline
    if family == "sd15":
        from diffusers import UNet2DConditionModel as Denoiser
    else:
        from diffusers import FluxTransformer2DModel as Denoiser
    denoiser = Denoiser.from_pretrained(base_dir, subfolder=denoiser_name)
    targets = tuple(targets or (SD_LORA_TARGETS if family == "sd15" else FLUX_LORA_TARGETS))
    alpha = float(rank if alpha is None else alpha)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False)
    denoiser.add_adapter(config)
    state = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(denoiser).items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subfolder_cls.save_lora_weights(str(out), **{f"{denoiser_name}_lora_layers": state,
                                                 f"{denoiser_name}_lora_adapter_metadata": config.to_dict()})
    info = {"family": family, "base_model": base, "adapter_type": "lora", "rank": rank, "alpha": alpha,
            "target_modules": list(targets), "text_encoder_lora": False, "trigger": trigger,
            "resolution": 64, "steps": 0, "dataset_hash": f"random-seed-{seed}",
            "prediction_type": "epsilon" if family == "sd15" else "flow_matching"}
    (out / "fitad_lora.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out
