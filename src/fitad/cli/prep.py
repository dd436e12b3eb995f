"""``fitad prep``: raw images -> cleaned, cropped, captioned training dataset, in one run or three stages;
``fitad prep evaluate``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from fitad.cli.common import build_config, config_options, stage_tracker, tracker_options


class _RunByDefault(click.Group):
    """A group whose ``run`` subcommand is implied: ``fitad prep IN OUT`` means ``fitad prep run IN OUT``."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "INPUT_DIR OUTPUT_DIR [OPTIONS] | clean-text|crop|caption INPUT_DIR "
                                                "OUTPUT_DIR [OPTIONS] | evaluate DATA_DIR [OPTIONS]")


@click.group("prep", cls=_RunByDefault)
def prep_group() -> None:
    """Prepare a training dataset from raw images (text cleanup, subject crop, captions).

    \b
    fitad prep INPUT_DIR OUTPUT_DIR --trigger sks [--class-word girl] [--workers 2]
    fitad prep evaluate DATA_DIR [--synthesize 48]     quality against ground truth (synth format)

    \b
    The same as three stages, each folder -> folder with a manifest.json (e.g. one pipeline step each;
    re-caption without redoing OCR and segmentation):
    fitad prep clean-text RAW CLEAN      text detection + inpainting (images/, masks/)
    fitad prep crop CLEAN CROPS          subject segmentation + square crops
    fitad prep caption CROPS DATASET     captions: the dataset `fitad prep run` writes

    `fitad prep INPUT_DIR OUTPUT_DIR` is short for `fitad prep run INPUT_DIR OUTPUT_DIR`;
    see `fitad prep run --help` for every option.
    """


# every option once, by the config field it sets; the commands pick theirs with _options(...)
_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "trigger": click.option("--trigger", default=None, help="Trigger word put first in every caption (default: sks)."),
    "class_word": click.option("--class-word", default=None,
                               help="Class word after the trigger, e.g. girl, bottle (default: none)."),
    "resolution": click.option("--resolution", type=click.IntRange(64, 4096), default=None,
                               help="Side of the square training images: 512 for SD1.5, 1024 for FLUX (default: 512)."),
    "captioner": click.option("--captioner", type=click.Choice(["template", "blip"]), default=None,
                              help="template = '<trigger> <class word>' only; blip = append a BLIP description."),
    "caption_model": click.option("--caption-model", default=None, metavar="ID|DIR",
                                  help="BLIP model ID, local directory or tiny-blip (local files only unless "
                                       "downloads are allowed)."),
    "text_detector": click.option("--text-detector", type=click.Choice(["auto", "rapidocr", "easyocr"]), default=None,
                                  help="Text detector; auto = EasyOCR if its weights are on disk, else RapidOCR "
                                       "(embedded)."),
    "segmenter": click.option("--segmenter", type=click.Choice(["auto", "rembg", "figurenet", "opencv"]), default=None,
                              help="Subject segmenter; auto = rembg if its model file is in U2NET_HOME, else FigureNet "
                                   "(bundled, trained on synthetic panels), else OpenCV rules."),
    "rembg_model": click.option("--rembg-model", default=None, metavar="NAME|FILE.onnx",
                                help="rembg model name (isnet-anime, u2net, birefnet-general) or a custom U^2-Net "
                                     ".onnx file."),
    "inpaint_method": click.option("--inpaint", "inpaint_method", type=click.Choice(["ns", "telea"]), default=None,
                                   help="Inpainting used to remove text: Navier-Stokes (default) or Telea."),
    "workers": click.option("--workers", type=click.IntRange(1, 64), default=None,
                            help="Worker processes; each loads the models once. Default from params.yaml (1)."),
}
_CAPTION_OPTIONS = ("trigger", "class_word", "captioner", "caption_model")
_BACKEND_OPTIONS = ("text_detector", "segmenter", "rembg_model", "inpaint_method", "workers")


def _options(*names: str) -> Callable[[Any], Any]:
    """Add the named options, listed in this order in --help."""
    def wrap(func: Any) -> Any:
        for name in reversed(names):
            func = _OPTIONS[name](func)
        return func
    return wrap


_backend_options = _options(*_BACKEND_OPTIONS)


@contextlib.contextmanager
def _progress(console: Any, label: str) -> Iterator[tuple[Callable[[int, int], None], Callable[[Any], None]]]:
    """A rich progress bar; yields the ``on_start``/``on_item`` callbacks prepare() and the stages take."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as progress:
        task = progress.add_task("", total=None)

        def on_start(total: int, todo: int) -> None:
            progress.update(task, total=total, description=f"{total - todo} up to date" if todo < total else "")

        def on_item(record: Any) -> None:
            progress.advance(task)
            if record.status == "failed":
                progress.console.print(f"[red]failed[/red]  {record.input}: {record.reason}")
            elif record.status == "skipped" and not record.resumed:
                progress.console.print(f"[yellow]skipped[/yellow] {record.input}: {record.reason}")

        yield on_start, on_item


@prep_group.command("run")
@click.argument("input_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@_options("trigger", "class_word", "resolution", "captioner", "caption_model")
@_backend_options
@click.option("--force", is_flag=True, help="Process every input again, even when its outputs are up to date.")
@tracker_options(default="none")
@config_options
@click.pass_context
def run_cmd(ctx: click.Context, input_dir: Path, output_dir: Path, trigger, class_word, resolution, captioner,
            caption_model, text_detector, segmenter, rembg_model, inpaint_method, workers, force,
            tracker, experiment, params_path, overrides) -> None:
    """Clean, crop and caption the top-level images of INPUT_DIR into a dataset in OUTPUT_DIR.

    OUTPUT_DIR gets images/<name>.png + .txt (kohya layout), metadata.jsonl (HF imagefolder) and
    report.json (status and reason per input, boxes, backends, timings). Re-running skips inputs
    whose outputs are up to date, so an interrupted run resumes. Exit code 1 if any input failed.
    """
    from fitad.prep.config import PrepConfig
    from fitad.prep.run import PrepError, log_prep_run, prepare

    config = build_config(PrepConfig, params_path, overrides, trigger=trigger, class_word=class_word,
                          resolution=resolution, captioner=captioner, caption_model=caption_model,
                          text_detector=text_detector, segmenter=segmenter, rembg_model=rembg_model,
                          inpaint_method=inpaint_method, workers=workers)
    from rich.console import Console

    console = Console(stderr=True)
    with _progress(console, "prep") as (on_start, on_item):
        run = stage_tracker(tracker, "prep", output_dir, [input_dir], experiment, run_name="prep")
        try:
            with run:
                report = prepare(config, input_dir, output_dir, force=force, on_start=on_start, on_item=on_item)
                log_prep_run(run, config, report, output_dir)
        except PrepError as exc:
            raise click.ClickException(str(exc)) from None
    _print_summary(console, report, "prep")
    ctx.exit(report.exit_code)


def _print_summary(console: Any, report: Any, label: str) -> None:
    from rich.table import Table

    totals = report.totals
    table = Table(title=f"{label} summary: {report.output_dir}", show_header=False)
    for key in ("inputs", "ok", "skipped", "failed", "resumed", "carried", "images_written", "workers", "elapsed_s",
                "images_per_s"):
        if key in totals:
            table.add_row(key, str(totals[key]))
    for used in report.backends.get("used", []):
        table.add_row("backends", ", ".join(f"{k}={v}" for k, v in used.items()))
    if totals.get("step_ms_mean"):
        table.add_row("ms per image", ", ".join(f"{k} {v:.0f}" for k, v in totals["step_ms_mean"].items() if v))
    console.print(table)
    problems = [r for r in report.items if r.status != "ok"]
    if problems:
        issues = Table(title="inputs not used")
        issues.add_column("input")
        issues.add_column("status")
        issues.add_column("reason")
        for r in problems:
            issues.add_row(r.input, r.status, r.reason)
        console.print(issues)


def _stage_command(name: str, function: str, options: tuple[str, ...], doc: str) -> click.Command:
    """``fitad prep <name> INPUT_DIR OUTPUT_DIR``: runs ``fitad.prep.stages.<function>`` with a progress bar."""
    @prep_group.command(name, help=doc)
    @click.argument("input_dir", type=click.Path(file_okay=False, path_type=Path))
    @click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
    @_options(*options, "workers")
    @config_options
    @click.pass_context
    def command(ctx: click.Context, input_dir: Path, output_dir: Path, params_path: Path | None,
                overrides: tuple[str, ...], **explicit: Any) -> None:
        from rich.console import Console

        from fitad.prep import stages
        from fitad.prep.config import PrepConfig
        from fitad.prep.run import PrepError

        config = build_config(PrepConfig, params_path, overrides, **explicit)
        console = Console(stderr=True)
        try:
            with _progress(console, f"prep {name}") as (on_start, on_item):
                report = getattr(stages, function)(config, input_dir, output_dir, on_start=on_start, on_item=on_item)
        except PrepError as exc:
            raise click.ClickException(str(exc)) from None
        _print_summary(console, report, f"prep {name}")
        ctx.exit(report.exit_code)
    return command


_stage_command("clean-text", "clean_text", ("text_detector", "inpaint_method"), """\
Detect and inpaint the text of the top-level images of INPUT_DIR (loads the text detector only).

OUTPUT_DIR gets images/<name>.png (cleaned, lossless), masks/<name>.png (the text masks) and
manifest.json (status and reason per input, text boxes, backends, timings). Exit code 1 if any
input failed.""")
_stage_command("crop", "crop_subjects", ("segmenter", "rembg_model", "resolution"), """\
Segment the subjects of a clean-text output (or a plain folder of images) into square crops.

Loads the segmenter only. OUTPUT_DIR gets images/<name>.png, or <name>-fig<N>.png for several
figures, and manifest.json (subject and crop boxes, rejected figures). Exit code 1 if any input failed.""")
_stage_command("caption", "caption_dataset", _CAPTION_OPTIONS, """\
Caption the crops of a crop output into a training dataset (loads the captioner only).

OUTPUT_DIR gets what `fitad prep run` writes: images/<name>.png + .txt, metadata.jsonl and
report.json, plus manifest.json. Run it again with another --trigger or --captioner to re-caption
without redoing text cleanup or segmentation. Exit code 1 if any input failed.""")


def _network_training_options(name: str, synth: int, styles: int, seed: int, epochs: int) -> Callable[[Any], Any]:
    """The options both prep networks are trained with (`train-figurenet`, `train-letternet`). The defaults
    repeat those of the network's settings class (the recipe of the network the package ships; a test keeps
    them equal) so that `fitad --help` does not import the image libraries."""
    options = [
        click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
                     default=Path(f"outputs/{name}/{name}.onnx"), show_default=True,
                     help=f"Where to write the trained network (ONNX). Use it with --set prep.{name}_model=FILE."),
        click.option("--synth-panels", type=click.IntRange(0, 100_000), default=synth, show_default=True,
                     help="fitad.synth panels to draw for training."),
        click.option("--styles-panels", type=click.IntRange(0, 100_000), default=styles, show_default=True,
                     help="fitad.synth_styles panels (dev split only; the holdout split is never trained on)."),
        click.option("--seed", type=click.IntRange(0), default=seed, show_default=True,
                     help="First panel seed; keep it away from the seeds you evaluate on (0...)."),
        click.option("--epochs", type=click.IntRange(1, 1000), default=epochs, show_default=True),
        click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
                     help="Processes drawing (and cleaning) the panels."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where to train; auto: the GPU when torch sees one."),
        click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder for the drawn panels and their arrays (default: a temporary folder, removed "
                          "afterwards; a kept one lets a second run skip drawing)."),
    ]

    def wrap(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return wrap


def _train_network(module: str, settings_class: str, out_file: Path, workdir: Path | None, **fields: Any) -> None:
    import importlib
    import importlib.util
    import tempfile

    missing = [name for name in ("torch", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(f"train-{module} needs {' and '.join(missing)}: pip install 'fitad[train,prep]'")
    network = importlib.import_module(f"fitad.prep.{module}")
    try:
        settings = getattr(network, settings_class)(**fields)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix=f"fitad-{module}-") as tmp:
        folder = workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        stats = network.train(settings, out_file, folder, progress=lambda message: click.echo(message, err=True))
    click.echo(json.dumps({"model": str(out_file), **stats}))


@prep_group.command("train-figurenet")
@_network_training_options("figurenet", synth=1000, styles=3000, seed=50_000, epochs=50)
def train_figurenet_cmd(out_file: Path, workdir: Path | None, **fields: Any) -> None:
    """Train FigureNet, the figure/background network the prep stage's segmenter runs.

    Draws panels with both generators, removes their text with the stage's own cleanup (LetterNet
    included), trains a small U-Net on the cleaned image plus the removed-text mask against the exact
    figure masks, and exports it to ONNX. The defaults are the recipe of the network the package ships
    (about 9 minutes on one H100 with --workers 16; on a 2-core CPU many hours: shrink --styles-panels,
    --synth-panels and --epochs for a try).
    """
    _train_network("figurenet", "TrainSettings", out_file, workdir, **fields)


@prep_group.command("train-letternet")
@_network_training_options("letternet", synth=500, styles=1500, seed=60_000, epochs=40)
def train_letternet_cmd(out_file: Path, workdir: Path | None, **fields: Any) -> None:
    """Train LetterNet, the lettering network that works beside the text detector.

    Draws panels with both generators and trains a small U-Net on the raw panels against their text
    polygons (every kind: balloon lines, narration, vertical columns, sound effects), then exports it to
    ONNX. The defaults are the recipe of the network the package ships (under 3 minutes on one H100 with
    --workers 16; on a 2-core CPU one to two hours).
    """
    _train_network("letternet", "LetterTrainSettings", out_file, workdir, **fields)


@prep_group.command("evaluate")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--synthesize", "synth_n", type=click.IntRange(1, 10_000), default=None,
              help="First draw this many panels into DATA_DIR if it holds none (see --generator).")
@click.option("--generator", type=click.Choice(["synth", "styles"]), default="synth", show_default=True,
              help="Panels --synthesize draws: fitad.synth's, or fitad.synth_styles' (other fonts, vertical text, "
                   "narration boxes, city backgrounds, balloons across figures).")
@click.option("--split", type=click.Choice(["dev", "holdout"]), default="dev", show_default=True,
              help="fitad.synth_styles split for --synthesize (holdout: its own seeds and fonts, never tuned on).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesized panels.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Score only the first N panels.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full metrics (per panel and overall) to this JSON file.")
@click.option("--check", is_flag=True, help="Exit with code 1 when a quality target is missed.")
@_backend_options
@config_options
@click.pass_context
def evaluate_cmd(ctx: click.Context, data_dir: Path, synth_n, generator, split, seed, limit, output, check,
                 text_detector, segmenter, rembg_model, inpaint_method, workers, params_path, overrides) -> None:
    """Score text cleanup and subject crops against the ground truth of the panels in DATA_DIR.

    DATA_DIR holds panels in the synth JSON format (fitad.synth's or fitad.synth_styles': panel.png +
    panel.json with texts and characters, masks/). Reported: text recall overall and per kind (bubble,
    narration, vertical, sfx; a box counts when half of it is detected), residual text after cleanup,
    characters found (a kept subject box at IoU >= 0.5, one to one), mean best IoU per character,
    whole-character crops, false subjects per panel (kept subjects that are no character, or a piece
    of one) and mask IoU, each against its target.
    """
    from fitad.prep.config import PrepConfig
    from fitad.prep.evaluate import TEXT_KINDS, evaluate, list_panels
    from fitad.fsutil import atomic_write_json

    config = build_config(PrepConfig, params_path, overrides, text_detector=text_detector, segmenter=segmenter,
                          rembg_model=rembg_model, inpaint_method=inpaint_method, workers=workers)
    if synth_n and (not data_dir.is_dir() or not list_panels(data_dir)):
        if generator == "styles":
            from fitad.synth_styles import synthesize_styles

            synthesize_styles(data_dir, synth_n, seed=seed, split=split)
        else:
            from fitad.config import SynthConfig
            from fitad.synth import synthesize

            synthesize(SynthConfig(n=synth_n, seed=seed), data_dir, progress=False)
    try:
        report = evaluate(config, data_dir, limit=limit)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for error in report.errors:
        click.echo(f"not scored: {error}", err=True)
    if output:
        atomic_write_json(output, report.to_dict())
    from rich.console import Console
    from rich.table import Table

    o = report.overall
    table = Table(title=f"prep quality on {len(report.panels)} panels ({data_dir})")
    for col in ("metric", "value", "target", "ok"):
        table.add_column(col)
    for key in ("text_recall", *(f"text_recall_{k}" for k in TEXT_KINDS), "residual_text", "characters_found",
                "character_iou", "whole_character_crops", "false_subjects_per_panel", "mask_iou"):
        value = o.get(key)
        op, target = report.targets.get(key, ("", None))
        ok = report.passed.get(key)
        table.add_row(key, "-" if value is None else f"{value:.4f}", f"{op} {target}" if target is not None else "",
                      "" if ok is None else ("[green]yes[/green]" if ok else "[red]no[/red]"))
    table.caption = (f"{o['text_boxes']} text boxes {o['text_boxes_by_kind']}, {o['characters']} characters, "
                     f"{o['false_subjects']} false subjects {o['false_subject_kinds']}, "
                     f"{o['rejected_subjects']} rejected with a reason; "
                     + ", ".join(f"{k}={v}" for k, v in report.backends.items()))
    Console().print(table)
    click.echo(json.dumps({"overall": report.overall, "passed": report.passed}))
    ctx.exit(1 if check and not report.all_passed else 0)


COMMANDS = [prep_group]
