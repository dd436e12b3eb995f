"""``fitad ad``: make an ad image (PNG + JSON) from a prompt or a photo, on the embedded defaults or real models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from fitad.cli.common import config_options


def _ad_options(func: Callable) -> Callable:
    options = [
        click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="PNG to write (default outputs/ads/MODE-FORMAT-sSEED.png); the JSON goes beside it."),
        click.option("--format", "fmt", default=None,
                     help="instagram_square (1:1 1080x1080), instagram_portrait (4:5), instagram_portrait_3x4, "
                          "instagram_story (9:16, text kept out of the UI zones), facebook_link (1200x630), "
                          "kakao_square (720x720), kakao_banner (800x400) or WIDTHxHEIGHT. See `fitad ad formats`."),
        click.option("--industry", default=None,
                     help="Shop type for the prompt template, copy and hashtags: an id or its Korean name "
                          "(cafe/카페, bakery/빵집, nail_shop/네일샵 ...). See `fitad ad industries`."),
        click.option("--lang", type=click.Choice(["ko", "en"]), default=None, help="Language of copy and hashtags."),
        click.option("--headline", default="", help="Headline drawn on the image (Korean or English)."),
        click.option("--subcopy", default="", help="Smaller line under the headline."),
        click.option("--shop-name", default="", help="Shop name for the caption and its hashtag."),
        click.option("--offer", default="", help="Offer line for the caption (e.g. '20% off until 4/30')."),
        click.option("--font", "font_path", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="TTF/OTF for the headline (default: the bundled Korean font)."),
        click.option("--brand-color", "brand_colors", multiple=True, metavar="#RRGGBB",
                     help="Brand colour preferred for text or backdrop when it keeps contrast >= 4.5 (repeatable)."),
        click.option("--logo", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="Logo image (PNG with transparency) placed in a corner, away from the subject."),
        click.option("--lora", default=None,
                     help="LoRA: a training output dir, an exported .safetensors, or models:/NAME@approved."),
        click.option("--lora-scale", type=click.FloatRange(-4, 4), default=1.0, show_default=True),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True),
        click.option("--steps", type=click.IntRange(1, 200), default=None, help="Denoising steps (generate.steps)."),
        click.option("--base-model", default=None,
                     help="Base model: zoo name (tiny-sd15), local diffusers dir or model ID (generate.base_model)."),
        click.option("--watermark/--no-watermark", default=None, help="Free-tier mark and reduced size."),
    ]
    for option in reversed(options):
        func = option(func)
    return config_options(func)


def _split_overrides(overrides: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``generate.KEY=V`` goes to the renderer's config, ``ads.KEY=V`` and plain ``KEY=V`` to the ad config."""
    ads, gen = [], []
    for pair in overrides:
        key = pair.split("=", 1)[0].strip()
        if key.startswith("generate."):
            gen.append(pair[len("generate."):])
        else:
            ads.append(pair[len("ads."):] if key.startswith("ads.") else pair)
    return ads, gen


def _load_logo(path: Path | None) -> Any:
    """The logo as RGBA through the project's image loader (EXIF, 16-bit, size limits), transparency kept."""
    if path is None:
        return None
    import numpy as np

    from fitad.images import ImageLoadError, load_image

    try:
        loaded = load_image(path.read_bytes(), path.name, max_pixels=16_000_000, min_side=8, section="ads")
    except ImageLoadError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--logo") from None
    alpha = loaded.alpha if loaded.alpha is not None else np.full(loaded.rgb.shape[:2], 255, np.uint8)
    return np.dstack([loaded.rgb, alpha])


def _run(mode: str, *, image: Path | None = None, product_image: Path | None = None, prompt: str = "",
         out: Path | None, fmt: str | None, industry: str | None, lang: str | None, headline: str, subcopy: str,
         shop_name: str, offer: str, font_path: str | None, brand_colors: tuple[str, ...], logo: Path | None,
         lora: str | None, lora_scale: float, seed: int, steps: int | None, base_model: str | None,
         watermark: bool | None, params_path: Path | None, overrides: tuple[str, ...]) -> None:
    from fitad.ads.config import AdConfig
    from fitad.cli.common import build_config

    ads_overrides, gen_overrides = _split_overrides(overrides)
    config = build_config(AdConfig, params_path, tuple(ads_overrides), format=fmt, industry=industry, lang=lang,
                          steps=steps, watermark=watermark)
    renderer = None
    if mode != "compose":
        from fitad.generate.config import RenderConfig
        from fitad.generate.renderer import Renderer, RenderError

        try:
            renderer = Renderer(build_config(RenderConfig, params_path, tuple(gen_overrides), base_model=base_model))
        except RenderError as exc:
            raise click.ClickException(str(exc)) from None
    from fitad.ads.make import make_ad
    from fitad.generate.renderer import Progress

    from fitad.ads.formats import get_format

    out = out or Path("outputs/ads") / f"{mode}-{get_format(config.format).key}-s{seed}.png"
    bar: dict[str, Any] = {}

    def progress(event: Progress) -> None:
        if "bar" not in bar:
            from tqdm import tqdm

            bar["bar"] = tqdm(total=event.total, desc=f"{mode}: {event.stage}", unit="step", leave=False)
        bar["bar"].n = event.step
        bar["bar"].refresh()

    try:
        result = make_ad(mode, config, renderer, image=image, product_image=product_image, prompt=prompt,
                         headline=headline, subcopy=subcopy, shop_name=shop_name, offer=offer, seed=seed,
                         lora=lora, lora_scale=lora_scale, font_path=font_path, brand_colors=brand_colors,
                         logo=_load_logo(logo), progress=progress)
    except ValueError as exc:  # every bad-input error of the ad library is a ValueError naming its field
        raise click.ClickException(str(exc)) from None
    finally:
        if "bar" in bar:
            bar["bar"].close()
    png, js = result.save(out)
    meta = result.metadata
    click.echo(f"wrote {png} ({meta['size'][0]}x{meta['size'][1]}, {meta['format']['label']}) and {js}")
    prompt_meta = meta.get("prompt") or {}
    if prompt_meta:
        click.echo(f"prompt ({prompt_meta['tokens']}/{prompt_meta['budget']} tokens): {prompt_meta['used']}")
        if prompt_meta["dropped"]:
            click.echo(f"  dropped to fit the token window: {'; '.join(prompt_meta['dropped'])}")
        if prompt_meta["unknown_words"]:
            click.echo(f"  not understood (left out of the prompt): {', '.join(prompt_meta['unknown_words'])}")
    for name, info in (meta.get("kept") or {}).items():
        if isinstance(info, dict):
            click.echo(f"kept {name}: {info.get('kept_pixels', 0):,} px exactly "
                       f"({info.get('segmenter') or info.get('face_detector')})")
    if "overlay" in meta:
        click.echo(f"headline: {meta['overlay']['font_px']} px, contrast {meta['overlay']['contrast']:.2f}:1")
    click.echo(f"hashtags: {' '.join(result.copy['hashtags'][:8])}{' ...' if len(result.copy['hashtags']) > 8 else ''}")


@click.group("ad")
def ad() -> None:
    """Make ad images: text-to-image with a LoRA, product / person / advanced modes that keep the product's and
    the face's pixels exactly, or a headline on a photo. Writes a PNG (metadata in its text chunks) and a JSON
    with the prompt used, what was dropped, timings, copy and hashtags.

    Settings come from the 'ads' and 'generate' sections of params.yaml; --set KEY=VALUE changes an ads key,
    --set generate.KEY=VALUE a renderer key (e.g. generate.base_model=stablediffusionapi/anything-v5).
    """


@ad.command("txt2img")
@click.argument("prompt")
@_ad_options
def txt2img(prompt: str, **kwargs: Any) -> None:
    """Render PROMPT (Korean or English shop request) with the LoRA, sized for the format."""
    _run("txt2img", prompt=prompt, **kwargs)


@ad.command("product")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--prompt", default="", help="What the new background should show (Korean or English).")
@_ad_options
def product(image: Path, prompt: str, **kwargs: Any) -> None:
    """Product mode: IMAGE's product kept pixel for pixel, a new background painted around it."""
    _run("product", image=image, prompt=prompt, **kwargs)


@ad.command("person")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--prompt", default="", help="The new outfit and background (Korean or English).")
@_ad_options
def person(image: Path, prompt: str, **kwargs: Any) -> None:
    """Person mode: IMAGE's face kept exactly, outfit and background repainted."""
    _run("person", image=image, prompt=prompt, **kwargs)


@ad.command("advanced")
@click.argument("image", type=click.Path(path_type=Path))
@click.argument("product_image", type=click.Path(path_type=Path))
@click.option("--prompt", default="", help="The new scene (Korean or English).")
@_ad_options
def advanced(image: Path, product_image: Path, prompt: str, **kwargs: Any) -> None:
    """Advanced mode: the face of IMAGE and the product of PRODUCT_IMAGE both kept, the rest repainted."""
    _run("advanced", image=image, product_image=product_image, prompt=prompt, **kwargs)


@ad.command("compose")
@click.argument("image", type=click.Path(path_type=Path))
@_ad_options
def compose(image: Path, **kwargs: Any) -> None:
    """Overlay only: IMAGE fitted to the format (cropped, never stretched) with the headline. No model runs."""
    _run("compose", image=image, **kwargs)


@ad.command("formats")
def formats() -> None:
    """List the SNS formats with their sizes and text-safe areas."""
    from fitad.ads.formats import ALIASES, FORMATS

    for fmt in FORMATS.values():
        aliases = ", ".join(a for a, k in ALIASES.items() if k == fmt.key)
        click.echo(f"{fmt.key:24} {fmt.width}x{fmt.height:<6} safe {fmt.safe_box()}  {fmt.label}"
                   + (f"  (aliases: {aliases})" if aliases else ""))
    click.echo("custom sizes: WIDTHxHEIGHT, e.g. 1200x800")


@ad.command("industries")
def industries() -> None:
    """List the shop types the prompt templates, copy and hashtags know."""
    from fitad.generate.industries import INDUSTRIES

    for ind in INDUSTRIES.values():
        click.echo(f"{ind.id:14} {ind.name_ko:8} {', '.join(ind.aliases)}")


COMMANDS = [ad]
