"""The data-preparation stage: ``prepare(config, input_dir, output_dir) -> PrepReport``.

The CLI (``fitad prep``), the DVC stage and the Kubeflow components all call :func:`prepare`; the
steps it chains (:func:`process_image` = :func:`clean_image` -> :func:`crop_image` ->
:func:`caption_crops`) are also importable one by one, and :mod:`fitad.prep.stages` runs each of
them as a folder-to-folder stage of its own. With ``workers > 1`` the inputs are spread over a
process pool whose initializer loads the backends (detector, segmenter, captioner) once per worker;
each worker then keeps them for every image it handles.

Each input is read once: its size is checked from ``stat`` (``prep.max_file_bytes``) before anything
is read, an input whose size and modification time match its state record is resumed without being
read, and any other input is read whole once by the worker, which hashes and decodes the same bytes
(content identical to the record: resumed without processing). Pictures in formats the stage cannot
read (HEIC, ...) are reported as skipped with the reason; other entries of the input folder are
listed under ``ignored`` in the report.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import cv2
import numpy as np

from fitad import __version__
from fitad.config import to_dict
from fitad.prep.caption import Captioner, compose_caption, make_captioner
from fitad.prep.config import PrepConfig
from fitad.prep.crop import (Box, Figure, balloon_regions, crop_square, cut_sides, find_figures, not_a_figure,
                             square_box)
from fitad.prep.dataset import IMAGES_DIR, CropRecord, DatasetStore, ItemRecord, output_stems
from fitad.fsutil import atomic_write_bytes, atomic_write_text
from fitad.paths import UnsafePathError
from fitad.prep.io import (ImageLoadError, check_file_bytes, encode_png, load_image, read_input, scan_inputs,
                           sha256_bytes)
from fitad.prep.letternet import LetterNetDetector, letternet_file
from fitad.prep.segment import Segmenter, figurenet_file, make_segmenter, picture_frame, resolve_segmenter
from fitad.prep.text import (TextDetector, detect_text, drop_line_art, make_text_detector, remove_text,
                             resolve_text_detector)

STEPS = ("load", "detect", "inpaint", "segment", "crop", "caption", "write")
# the backend kinds, named as in ItemRecord.backends
BACKEND_KINDS = ("text_detector", "segmenter", "captioner")
T = TypeVar("T")
R = TypeVar("R")
B = TypeVar("B")


class PrepError(RuntimeError):
    """The stage cannot run at all (missing input directory, a backend that cannot load)."""


# ---------------------------------------------------------------- backends

@dataclasses.dataclass
class Backends:
    """The models of the stage, loaded once per process; a split stage loads only the one it uses (None: not loaded)."""

    text: TextDetector | None
    segmenter: Segmenter | None
    captioner: Captioner | None
    notes: dict[str, str]
    load_ms: float
    letters: LetterNetDetector | None = None  # loaded with the text detector unless prep.letternet is off

    def names(self) -> dict[str, str]:
        """Name per loaded backend kind (see BACKEND_KINDS)."""
        names = {}
        if self.text is not None:
            names["text_detector"] = self.text.name
            if self.letters is not None:
                names["text_detector"] += f"+letternet:{self.letters.model}"
        if self.segmenter is not None:
            seg = self.segmenter.name
            names["segmenter"] = f"{seg}:{getattr(self.segmenter, 'model', '?')}" if seg in ("rembg", "figurenet") else seg
        if self.captioner is not None:
            names["captioner"] = self.captioner.name
        return names


def _need(backend: B | None, kind: str) -> B:
    if backend is None:
        raise PrepError(f"the {kind} backend was not loaded: pass {kind!r} in load_backends(needs=...)")
    return backend


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def load_backends(config: PrepConfig, threads: int | None = None,
                  needs: Iterable[str] = BACKEND_KINDS) -> Backends:
    """Build the configured detector, segmenter and captioner (``auto`` picks what is on disk).

    ``needs`` names the kinds to build (BACKEND_KINDS); the others stay None, so a stage that only
    captions never loads an OCR or segmentation model.
    """
    needs = set(needs)
    unknown = needs - set(BACKEND_KINDS)
    if unknown:
        raise ValueError(f"unknown backend kind(s) {sorted(unknown)}; expected {BACKEND_KINDS}")
    start = time.perf_counter()
    needs_torch = (("captioner" in needs and config.captioner == "blip")
                   or ("text_detector" in needs and config.text_detector == "easyocr"))
    device = resolve_device(config.device) if needs_torch else "cpu"
    text = segmenter = captioner = letters = None
    notes: dict[str, str] = {}
    if "text_detector" in needs:
        text, notes["text_detector"] = make_text_detector(config, threads=threads, use_gpu=device == "cuda")
        letters_file = letternet_file(config)
        if letters_file is not None:
            letters = LetterNetDetector(letters_file, threads=threads)
            notes["letternet"] = f"letternet:{letters_file.name}"
    if "segmenter" in needs:
        segmenter, notes["segmenter"] = make_segmenter(config, threads=threads)
    if "captioner" in needs:
        captioner, notes["captioner"] = make_captioner(config, device=device, threads=threads)
    return Backends(text, segmenter, captioner, notes, (time.perf_counter() - start) * 1000, letters)


# ---------------------------------------------------------------- one image

@dataclasses.dataclass
class CropResult:
    figure: Figure
    box: Box
    image: np.ndarray
    caption: str = ""
    cut_at: list[str] = dataclasses.field(default_factory=list)  # image edges the figure touches (may go on beyond)


@dataclasses.dataclass
class ImageResult:
    """Everything one image went through, kept in memory (evaluation reads the intermediates)."""

    polygons: list[np.ndarray]
    text_mask: np.ndarray
    cleaned: np.ndarray
    mask: np.ndarray
    figures: list[Figure]
    rejected: list[str]
    crops: list[CropResult]
    timings_ms: dict[str, float]


class StepTimer:
    """Milliseconds per step; one timer runs through the chained steps so each lap starts where the last ended."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def restart(self) -> None:
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.ms[step] = self.ms.get(step, 0.0) + (now - self._last) * 1000
        self._last = now


def select_figures(figures: list[Figure], min_side: int, mask: np.ndarray | None = None,
                   text_mask: np.ndarray | None = None) -> tuple[list[Figure], list[str]]:
    """Split figures into usable ones and rejection reasons: too small (``min_side``), or, given the
    mask, a region that is no figure (text, a plain rectangle, a line: :func:`not_a_figure`)."""
    keep, rejected = [], []
    for fig in figures:
        x0, y0, x1, y1 = fig.bbox
        if fig.side < min_side:
            rejected.append(f"subject at [{x0}, {y0}, {x1}, {y1}] is too small: {x1 - x0}x{y1 - y0} px, "
                            f"the longer side must be at least {min_side} px (prep.min_subject_side)")
            continue
        why = not_a_figure(fig, mask, text_mask) if mask is not None else None
        if why:
            rejected.append(f"subject at [{x0}, {y0}, {x1}, {y1}] is not a figure: {why}")
        else:
            keep.append(fig)
    return keep, rejected


@dataclasses.dataclass
class CleanedImage:
    polygons: list[np.ndarray]
    text_mask: np.ndarray  # uint8, 255 where text was removed; the segmenter reads it to recognise balloons
    cleaned: np.ndarray


@dataclasses.dataclass
class CroppedImage:
    mask: np.ndarray
    figures: list[Figure]  # the accepted ones
    rejected: list[str]
    crops: list[CropResult]


def clean_image(rgb: np.ndarray, config: PrepConfig, backends: Backends,
                timer: StepTimer | None = None) -> CleanedImage:
    """Detect text -> inpaint it (needs the text detector).

    Text detections whose strokes all run out of their box are line art, not text, and are dropped
    (``text_drop_line_art``) so that a figure's legs are not inpainted away.
    """
    timer = timer or StepTimer()
    lettering = backends.letters.read(rgb) if backends.letters is not None else None
    polygons = detect_text(_need(backends.text, "text_detector"), rgb, config, lettering)
    if config.text_drop_line_art:
        polygons = drop_line_art(rgb, polygons, lettering=lettering)
    timer.lap("detect")
    cleaned, tmask = remove_text(rgb, polygons, dilate_px=config.text_dilate_px,
                                 dilate_share=config.text_dilate_share,
                                 method=config.inpaint_method, radius=config.inpaint_radius)
    timer.lap("inpaint")
    return CleanedImage(polygons, tmask, cleaned)


def crop_image(cleaned: np.ndarray, text_mask: np.ndarray, config: PrepConfig, backends: Backends,
               timer: StepTimer | None = None) -> CroppedImage:
    """Segment the subject -> figures -> square crops (needs the segmenter); captions left empty."""
    timer = timer or StepTimer()
    mask = _need(backends.segmenter, "segmenter").segment(cleaned, text_mask)
    timer.lap("segment")
    figures = find_figures(mask, config.figure_min_area, config.split_figures, text_mask,
                           balloon_regions(cleaned, text_mask))
    accepted, rejected = select_figures(figures, config.min_subject_side, mask, text_mask)
    height, width = cleaned.shape[:2]
    frame = picture_frame(cleaned) if accepted else None
    crops = []
    for fig in accepted:
        box = square_box(fig.bbox, config.crop_margin, width, height)
        crops.append(CropResult(fig, box, crop_square(cleaned, box, config.resolution, config.pad_mode),
                                cut_at=cut_sides(fig.bbox, width, height, frame=frame)))
    timer.lap("crop")
    return CroppedImage(mask, accepted, rejected, crops)


def caption_crops(images: Sequence[np.ndarray], config: PrepConfig, backends: Backends,
                  timer: StepTimer | None = None) -> list[str]:
    """One caption per crop: ``<trigger> <class word>, <description>`` (needs the captioner)."""
    timer = timer or StepTimer()
    captioner = _need(backends.captioner, "captioner")
    captions = [compose_caption(config.trigger, config.class_word, captioner.describe(image)) for image in images]
    timer.lap("caption")
    return captions


def process_image(rgb: np.ndarray, config: PrepConfig, backends: Backends, *,
                  caption: bool = True) -> ImageResult:
    """Detect text -> inpaint it -> segment the subject -> square crops -> captions, in memory."""
    timer = StepTimer()
    cleaned = clean_image(rgb, config, backends, timer)
    cropped = crop_image(cleaned.cleaned, cleaned.text_mask, config, backends, timer)
    if caption:
        for crop, text in zip(cropped.crops, caption_crops([c.image for c in cropped.crops], config, backends, timer)):
            crop.caption = text
    else:
        timer.lap("caption")
    return ImageResult(cleaned.polygons, cleaned.text_mask, cleaned.cleaned, cropped.mask, cropped.figures,
                       cropped.rejected, cropped.crops, timer.ms)


def crop_outcome(cropped: CroppedImage, config: PrepConfig) -> tuple[str, str]:
    """``(status, reason)`` of an input from its crops: skipped without any, else ok (noting subjects left out and
    figures cut by the image edge)."""
    if not cropped.crops:
        return "skipped", ("; ".join(cropped.rejected) if cropped.rejected else no_subject_reason(cropped.mask, config))
    notes = []
    if cropped.rejected:
        notes.append(f"{len(cropped.rejected)} subject(s) left out, reasons under 'rejected'")
    cut = [c for c in cropped.crops if c.cut_at]
    if cut:
        notes.append(f"{len(cut)} figure(s) touch the image edge and may go on beyond it (crops[].cut_at)")
    return "ok", "; ".join(notes)


def input_problem(exc: ImageLoadError | OSError) -> str:
    """The reason recorded for an input that cannot be read or decoded."""
    if isinstance(exc, ImageLoadError):
        return str(exc)
    return f"cannot read file: {exc.strerror or exc}"


def polygon_box(polygon: np.ndarray) -> list[int]:
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int)
    return [int(x0), int(y0), int(x1), int(y1)]


def no_subject_reason(mask: np.ndarray, config: PrepConfig) -> str:
    if not mask.any():
        return "no subject found: the segmentation mask is empty"
    n, _l, stats, _c = cv2.connectedComponentsWithStats((mask > 127).astype(np.uint8), connectivity=8)
    largest = stats[1:, cv2.CC_STAT_AREA].max() / mask.size if n > 1 else 0.0
    return (f"no subject found: the largest masked region covers {largest:.2%} of the image, "
            f"below prep.figure_min_area = {config.figure_min_area:.2%}")


# ---------------------------------------------------------------- one file

@dataclasses.dataclass
class FileTask:
    path: str
    stem: str
    fingerprint: str
    output_dir: str
    size: int = 0       # stat of the input taken before it is read (recorded for the next run)
    mtime_ns: int = 0
    previous: ItemRecord | None = None  # up-to-date record of an earlier run, reused if the content is the same


def process_file(task: FileTask, config: PrepConfig, backends: Backends, worker: dict[str, Any]) -> ItemRecord:
    """Read one input file once, hash and decode it, run the steps and write its crops.

    Never raises for bad input. When the bytes hash to ``task.previous``'s content, that record is
    returned (marked resumed) and nothing is processed again.
    """
    record = ItemRecord(input=Path(task.path).name, fingerprint=task.fingerprint, size=task.size,
                        mtime_ns=task.mtime_ns, backends=backends.names(), worker=dict(worker))
    timer = StepTimer()
    try:
        data = read_input(task.path, config.max_file_bytes)
    except (ImageLoadError, OSError) as exc:
        record.reason = input_problem(exc)
        return record
    record.sha256 = sha256_bytes(data)
    if task.previous is not None and task.previous.sha256 == record.sha256:
        return dataclasses.replace(task.previous, size=task.size, mtime_ns=task.mtime_ns, resumed=True)
    try:
        loaded = load_image(data, record.input, max_pixels=config.max_pixels, min_side=config.min_image_side)
    except ImageLoadError as exc:
        record.reason = str(exc)
        return record
    del data
    timer.lap("load")
    record.width, record.height = loaded.size
    record.source_mode, record.notes = loaded.source_mode, loaded.notes
    try:
        result = process_image(loaded.rgb, config, backends)
    except Exception as exc:  # a backend failing on one image must not stop the batch
        record.reason = f"processing failed: {type(exc).__name__}: {exc}"
        record.timings_ms = {k: round(v, 1) for k, v in timer.ms.items()}
        return record
    timer.ms.update(result.timings_ms)
    record.text_boxes = [polygon_box(p) for p in result.polygons]
    record.subject_bboxes = [list(f.bbox) for f in result.figures]
    record.rejected = result.rejected
    record.status, record.reason = crop_outcome(CroppedImage(result.mask, result.figures, result.rejected,
                                                             result.crops), config)
    if result.crops:
        timer.restart()
        record.crops = write_crops(task.stem, result.crops, Path(task.output_dir))
        timer.lap("write")
    record.timings_ms = {k: round(v, 1) for k, v in timer.ms.items()}
    return record


def crop_names(stem: str, count: int) -> list[str]:
    """``<stem>`` for one figure, ``<stem>-fig<N>`` for several (the suffix output_stems reserves)."""
    return [stem] if count == 1 else [f"{stem}-fig{i + 1}" for i in range(count)]


def write_pair(output_dir: Path, name: str, png: bytes, caption: str) -> tuple[str, str]:
    """``images/<name>.png`` + ``images/<name>.txt`` written atomically; their paths relative to ``output_dir``."""
    image_rel, caption_rel = f"{IMAGES_DIR}/{name}.png", f"{IMAGES_DIR}/{name}.txt"
    atomic_write_bytes(output_dir / image_rel, png)
    atomic_write_text(output_dir / caption_rel, caption + "\n")
    return image_rel, caption_rel


def write_crops(stem: str, crops: list[CropResult], output_dir: Path) -> list[CropRecord]:
    """``images/<stem>.png`` + ``.txt`` (one figure) or ``<stem>-fig<N>.*`` (several), written atomically."""
    out = []
    for name, crop in zip(crop_names(stem, len(crops)), crops):
        image_rel, caption_rel = write_pair(output_dir, name, encode_png(crop.image), crop.caption)
        out.append(CropRecord(image_rel, caption_rel, crop.caption, list(crop.figure.bbox), list(crop.box),
                              crop.cut_at))
    return out


# ---------------------------------------------------------------- worker pool

_WORKER: dict[str, Any] = {}


def _init_worker(config: PrepConfig, threads: int, extra: dict[str, Any],
                 needs: tuple[str, ...] = BACKEND_KINDS) -> None:
    """Pool initializer: pin thread counts, then load the backends once for this worker."""
    cv2.setNumThreads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    _WORKER.update(config=config, info={"pid": os.getpid(), **extra}, error=None)
    try:
        _WORKER["backends"] = load_backends(config, threads=threads, needs=needs)
        _WORKER["loads"] = _WORKER.get("loads", 0) + 1
        _WORKER["info"].update(backend_load_ms=round(_WORKER["backends"].load_ms, 1),
                               backend_notes=_WORKER["backends"].notes)
    except Exception as exc:
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def _call_in_worker(fn: Callable[..., R], task: Any) -> R:
    if _WORKER.get("error"):
        raise PrepError(f"a backend could not be loaded: {_WORKER['error']}")
    info = dict(_WORKER["info"], backend_loads=_WORKER["loads"])
    return fn(task, _WORKER["config"], _WORKER["backends"], info)


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers fork from a clean server process (no inherited threads or ONNX sessions).
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["fitad.prep.run"])
        return ctx
    return multiprocessing.get_context("spawn")


def run_tasks(fn: Callable[[T, PrepConfig, Backends, dict[str, Any]], R], tasks: Iterable[T],
              config: PrepConfig, *, workers: int = 1, extra: dict[str, Any] | None = None,
              on_result: Callable[[R], None] | None = None, needs: Iterable[str] = BACKEND_KINDS) -> list[R]:
    """Apply ``fn(task, config, backends, worker_info)`` to every task; results in task order.

    ``workers == 1`` runs in this process (backends loaded once here); otherwise a process pool
    whose initializer loads the backends once per worker. ``needs``: the backend kinds to load.
    """
    needs = tuple(needs)
    tasks = list(tasks)
    extra = extra or {}
    results: list[Any] = [None] * len(tasks)
    if not tasks:
        return []
    if workers <= 1 or len(tasks) == 1:
        try:
            backends = load_backends(config, needs=needs)
        except Exception as exc:
            raise PrepError(f"a backend could not be loaded: {type(exc).__name__}: {exc}") from exc
        info = {"pid": os.getpid(), "backend_loads": 1, "backend_load_ms": round(backends.load_ms, 1),
                "backend_notes": backends.notes, **extra}
        for i, task in enumerate(tasks):
            results[i] = fn(task, config, backends, info)
            if on_result:
                on_result(results[i])
        return results
    workers = min(workers, len(tasks))
    threads = max(1, (os.cpu_count() or 1) // workers)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                   initializer=_init_worker, initargs=(config, threads, extra, needs))
    try:
        pending: dict[Future, int] = {executor.submit(_call_in_worker, fn, t): i for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                results[i] = fut.result()
                if on_result:
                    on_result(results[i])
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results


# ---------------------------------------------------------------- the stage

@dataclasses.dataclass
class PrepReport:
    output_dir: str
    items: list[ItemRecord]
    totals: dict[str, Any]
    backends: dict[str, Any]
    config: dict[str, Any]
    # entries of the input folder that are not images ({"input": name, "reason": why}), e.g. .json, sub-folders
    ignored: list[dict[str, str]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[ItemRecord]:
        return [r for r in self.items if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (skipped inputs are not failures), else 1."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {"version": __version__, "output_dir": self.output_dir, "totals": self.totals,
                "backends": self.backends, "config": self.config, "items": [r.to_dict() for r in self.items],
                "ignored": self.ignored}


def summarize(items: Sequence[ItemRecord], elapsed_s: float, workers: int, *, unsupported: Iterable[str] = (),
              ignored: int = 0, steps: Sequence[str] = STEPS) -> dict[str, Any]:
    """Counts, throughput and mean per-step timings (of ``steps``) of the items processed in this run.

    ``unsupported``: names of the items in a format the stage does not read (counted, not processed);
    ``ignored``: how many non-image entries the input folder had.
    """
    unsupported = set(unsupported)
    processed = [r for r in items if not r.resumed and r.input not in unsupported]
    timed = [r for r in processed if r.timings_ms]
    step_ms = {s: round(float(np.mean([r.timings_ms.get(s, 0.0) for r in timed])), 1) for s in steps} \
        if timed else {}
    pids = sorted({r.worker.get("pid") for r in processed if r.worker.get("pid")})
    return {
        "inputs": len(items),
        **{s: sum(r.status == s for r in items) for s in ("ok", "skipped", "failed")},
        "resumed": sum(r.resumed for r in items),
        "processed": len(processed),
        "unsupported": len(unsupported),
        "ignored": ignored,
        "images_written": sum(len(r.crops) for r in items if r.status == "ok"),
        "workers": workers,
        "worker_pids": pids,
        "max_backend_loads_per_worker": max((r.worker.get("backend_loads", 0) for r in processed), default=0),
        "elapsed_s": round(elapsed_s, 3),
        "images_per_s": round(len(processed) / elapsed_s, 3) if processed and elapsed_s > 0 else None,
        "step_ms_mean": step_ms,
    }


def resolved_fingerprint(config: PrepConfig) -> str:
    """The config's fingerprint plus the backends ``auto`` resolves to right now.

    Dropping a rembg or EasyOCR model in place switches ``auto`` to it, so inputs prepared with
    the embedded defaults are no longer up to date and a re-run prepares them again; so does another
    FigureNet file.
    """
    segmenter = resolve_segmenter(config)
    if segmenter == "figurenet":  # another network file segments differently
        segmenter += ":" + sha256_bytes(figurenet_file(config).read_bytes())[:12]
    text = resolve_text_detector(config)
    letters = letternet_file(config)
    if letters is not None and letters.is_file():  # so does another LetterNet file
        text += "+letternet:" + sha256_bytes(letters.read_bytes())[:12]
    return f"{config.fingerprint()}:{text}:{segmenter}"


def prepare(config: PrepConfig, input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
            force: bool = False, on_start: Callable[[int, int], None] | None = None,
            on_item: Callable[[ItemRecord], None] | None = None) -> PrepReport:
    """Turn the top-level images of ``input_dir`` into a training dataset in ``output_dir``.

    Inputs whose content and config are unchanged since an earlier run are skipped (``force``
    processes everything again). ``on_start(total, to_process)`` and ``on_item(record)`` report
    progress. Bad inputs become failed/skipped records with a reason; the batch always goes on.
    A state record whose paths leave the output directory stops the stage (PrepError naming it)
    before any file is read or deleted.
    """
    try:
        scan = scan_inputs(input_dir)
    except FileNotFoundError as exc:
        raise PrepError(str(exc)) from None
    inputs = scan.images
    out = Path(output_dir)
    if out.resolve() == Path(input_dir).resolve():
        raise PrepError("the output directory must differ from the input directory")
    store = DatasetStore(out)
    try:
        store.prepare_dirs()
        store.check_state()  # every record, before prune or any task may delete through one
    except UnsafePathError as exc:
        raise PrepError(f"unsafe output directory or state record, nothing was changed: {exc}") from None
    store.prune({p.name for p in inputs})
    previous_records = {p.name: store.load_record(p.name) for p in inputs}
    stems = output_stems(inputs)
    fingerprint = resolved_fingerprint(config)
    records: dict[str, ItemRecord] = {}
    tasks: list[FileTask] = []
    refused: list[ItemRecord] = []
    for path in inputs:
        previous = previous_records[path.name]
        try:
            st = path.stat()
            check_file_bytes(st.st_size, config.max_file_bytes)
        except ImageLoadError as exc:
            refused.append(ItemRecord(input=path.name, reason=str(exc), fingerprint=fingerprint))
            continue
        except OSError as exc:
            refused.append(ItemRecord(input=path.name, reason=f"cannot read file: {exc.strerror or exc}"))
            continue
        reusable = not force and store.reusable(previous, fingerprint)
        if reusable and previous.size == st.st_size and previous.mtime_ns == st.st_mtime_ns and previous.size:
            previous.resumed = True  # same size and modification time: not read at all
            records[path.name] = previous
        else:
            tasks.append(FileTask(str(path), stems[path.name], fingerprint, str(out.resolve()), st.st_size,
                                  st.st_mtime_ns, previous if reusable else None))
    unsupported = [ItemRecord(input=p.name, status="skipped", reason=reason) for p, reason in scan.unsupported]
    total = len(inputs) + len(unsupported)
    if on_start:
        on_start(total, total - len(records))
    for record in list(records.values()):
        if on_item:
            on_item(record)

    backend_notes: dict[str, set[str]] = {}

    def finish(record: ItemRecord) -> None:
        for key, note in (record.worker.pop("backend_notes", None) or {}).items():
            backend_notes.setdefault(key, set()).add(note)
        store.remove_stale(previous_records.get(record.input), record)
        store.save_record(dataclasses.replace(record, resumed=False))
        records[record.input] = record
        if on_item:
            on_item(record)

    for record in refused:
        finish(record)
    for record in unsupported:
        records[record.input] = record
        if on_item:
            on_item(record)
    start = time.perf_counter()
    run_tasks(process_file, tasks, config, workers=config.workers, on_result=finish)
    elapsed = time.perf_counter() - start
    items = [records[name] for name in sorted(records)]
    store.write_metadata(items)
    backends = sorted({tuple(sorted(r.backends.items())) for r in items if r.backends})
    ignored = [{"input": name, "reason": reason} for name, reason in scan.ignored]
    report = PrepReport(output_dir=str(out), items=items,
                        totals=summarize(items, elapsed, config.workers, unsupported=[r.input for r in unsupported],
                                         ignored=len(ignored)),
                        backends={"used": [dict(b) for b in backends],
                                  "why": {k: sorted(v) for k, v in backend_notes.items()}},
                        config=to_dict(config), ignored=ignored)
    store.write_report(report.to_dict())
    # a stage run that crashed here earlier left its marker (fitad.prep.stages.INCOMPLETE): the folder is whole now
    (out / "manifest.incomplete.json").unlink(missing_ok=True)
    return report


def log_prep_run(run: Any, config: PrepConfig, report: Any, output_dir: str | os.PathLike) -> None:
    """The prep run's record: settings, totals, the backends actually used, the report file."""
    output_dir = Path(output_dir)
    run.log_params(to_dict(config))
    run.log_metrics({k: float(v) for k, v in report.totals.items() if isinstance(v, (int, float))}, step=0)
    used = sorted({f"{k}:{v}" for entry in report.backends.get("used", []) for k, v in entry.items()})
    run.set_tags({"fitad.backends": ",".join(used)})
    if (output_dir / "report.json").is_file():
        run.log_artifact(output_dir / "report.json", "prep")
