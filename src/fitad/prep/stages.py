"""The prep stage split in three folder-to-folder stages, so a pipeline can run (and re-run) each alone.

::

    clean_text(config, RAW, CLEAN)        RAW: top-level images, as prepare() reads them
        CLEAN/images/<stem>.png           the input with its text inpainted (lossless PNG)
        CLEAN/masks/<stem>.png            the text mask the segmenter is given
    crop_subjects(config, CLEAN, CROPS)   CLEAN: clean_text's output, or a plain folder of images (no mask)
        CROPS/images/<stem>.png | <stem>-fig<N>.png    square crops, named as prepare() names them
    caption_dataset(config, CROPS, DATA)  CROPS: crop_subjects' output
        DATA/images/<name>.png + .txt, metadata.jsonl, report.json    exactly prepare()'s dataset layout

Every output folder gets ``manifest.json``: ``stage``, ``version``, ``config``, ``input_dir``,
``output_dir``, ``upstream`` (stage, input_dir and config of each earlier stage), ``totals``,
``items`` (one per original input, an :class:`~fitad.prep.dataset.ItemRecord` plus ``stem``, and
``image``/``mask`` for clean_text), ``backends`` and ``ignored``. An item keeps what earlier stages
found (hash, size, notes, text boxes); items an earlier stage failed or skipped are carried through
unprocessed, so the final report lists every input as prepare()'s does. caption_dataset's
``report.json`` is its manifest: a superset of prepare()'s report.

A stage re-run into the same folder rewrites it: files its previous manifest lists and the new run
did not write again are deleted, after every listed path has been checked to stay inside the folder;
nothing else is ever deleted. The stages do not resume: use :func:`fitad.prep.run.prepare` for that.

A run first replaces the folder's ``manifest.json`` with ``manifest.incomplete.json`` (what the
previous complete run wrote, for the stale-file removal of the next run), and writes
``manifest.json`` only once it is done: a run that crashes leaves no manifest, and no later stage
reads a folder that holds the marker without a manifest. caption_dataset also removes
``report.json`` and ``metadata.jsonl`` at its start. An input folder that is the output folder or lies
inside it, or an input file that lies in a folder the stage writes, is refused before anything is
written.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from fitad import __version__
from fitad.config import to_dict
from fitad.fsutil import atomic_write_bytes, atomic_write_json
from fitad.paths import UnsafePathError, resolve_inside
from fitad.prep.config import PrepConfig
from fitad.prep.dataset import IMAGES_DIR, CropRecord, DatasetStore, ItemRecord, output_stems
from fitad.prep.io import (ImageLoadError, LoadedImage, check_file_bytes, encode_png, load_image, read_input,
                           scan_inputs, sha256_bytes)
from fitad.prep.run import (Backends, PrepError, StepTimer, caption_crops, clean_image, crop_image, crop_names,
                            crop_outcome, input_problem, polygon_box, run_tasks, summarize, write_pair)

__all__ = ["MANIFEST", "StageItem", "StageReport", "caption_dataset", "clean_text", "crop_subjects"]

MANIFEST = "manifest.json"
INCOMPLETE = "manifest.incomplete.json"  # a run started and has not finished (see the module docstring)
MASKS_DIR = "masks"
CLEAN, CROP, CAPTION = "clean_text", "crop_subjects", "caption_dataset"


@dataclasses.dataclass
class StageItem(ItemRecord):
    """One original input in a stage manifest: its ItemRecord, carried from stage to stage, plus this stage's files."""

    stem: str = ""   # output stem, fixed by clean_text over all inputs (output_stems) and kept downstream
    image: str = ""  # clean_text: the cleaned image, relative to the output dir
    mask: str = ""   # clean_text: the text mask

    def output_files(self) -> list[str]:
        return [p for p in (self.image, self.mask) if p] + [p for c in self.crops
                                                            for p in (c.image, c.caption_file) if p]

    def images_written(self) -> int:
        return (1 if self.image else 0) + len(self.crops)


@dataclasses.dataclass
class StageReport:
    stage: str
    input_dir: str
    output_dir: str
    manifest_path: Path
    items: list[StageItem]
    totals: dict[str, Any]
    backends: dict[str, Any]
    config: dict[str, Any]
    ignored: list[dict[str, str]] = dataclasses.field(default_factory=list)
    upstream: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[StageItem]:
        return [r for r in self.items if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """1 when any item failed (here or in an earlier stage), else 0."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "version": __version__, "config": self.config, "input_dir": self.input_dir,
                "output_dir": self.output_dir, "upstream": self.upstream, "totals": self.totals,
                "items": [r.to_dict() for r in self.items], "backends": self.backends, "ignored": self.ignored}


@dataclasses.dataclass
class StageTask:
    item: StageItem   # what earlier stages know about the input
    input_dir: str
    output_dir: str
    source: str = ""  # the file to read, relative to input_dir (caption_dataset reads item.crops instead)
    mask: str = ""    # crop_subjects: the text mask, relative to input_dir ('' = no text removed)
    fresh: bool = False  # the source is the original input: record its hash, size and mode

    def start(self, backends: Backends, worker: dict[str, Any]) -> StageItem:
        item = copy.deepcopy(self.item)
        item.backends = {**item.backends, **backends.names()}
        item.worker = dict(worker)
        return item


@dataclasses.dataclass
class _Plan:
    tasks: list[StageTask]
    carried: list[StageItem]  # reported as they are, not processed
    ignored: list[dict[str, str]]
    why: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # backend notes of earlier stages
    upstream: list[dict[str, Any]] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------- reading inputs

def _reason(item: StageItem, rel: str, problem: str) -> str:
    # the original input names itself in the item; a file of an earlier stage must be named in the reason
    return problem if rel == item.input else f"{rel}: {problem}"


def _read_image(task: StageTask, rel: str, config: PrepConfig,
                item: StageItem) -> tuple[bytes, LoadedImage] | tuple[None, None]:
    """``input_dir/rel`` read once and decoded, or Nones with ``item.reason`` set (the batch goes on)."""
    try:
        data = read_input(Path(task.input_dir) / rel, config.max_file_bytes)
        if task.fresh:
            item.sha256 = sha256_bytes(data)
        loaded = load_image(data, rel, max_pixels=config.max_pixels, min_side=config.min_image_side)
    except (ImageLoadError, OSError) as exc:
        item.reason = _reason(item, rel, input_problem(exc))
        return None, None
    if task.fresh:
        item.width, item.height = loaded.size
        item.source_mode, item.notes = loaded.source_mode, loaded.notes
    return data, loaded


def _read_mask(task: StageTask, config: PrepConfig, item: StageItem, shape: tuple[int, ...]) -> np.ndarray | None:
    if not task.mask:
        return np.zeros(shape[:2], np.uint8)
    try:
        data = read_input(Path(task.input_dir) / task.mask, config.max_file_bytes)
    except (ImageLoadError, OSError) as exc:
        item.reason = _reason(item, task.mask, input_problem(exc))
        return None
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None or mask.shape != shape[:2]:
        got = "not a readable PNG" if mask is None else f"{mask.shape[1]}x{mask.shape[0]} px"
        item.reason = _reason(item, task.mask, f"text mask is {got}, expected {shape[1]}x{shape[0]} px")
        return None
    return mask


def _finish(item: StageItem, timer: StepTimer, status: str | None = None, reason: str | None = None) -> StageItem:
    if status is not None:
        item.status = status
    if reason is not None:
        item.reason = reason
    item.timings_ms = {k: round(v, 1) for k, v in timer.ms.items()}
    return item


def _processing_failed(item: StageItem, timer: StepTimer, exc: Exception) -> StageItem:
    # a backend failing on one image must not stop the batch
    return _finish(item, timer, "failed", f"processing failed: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- per-item work (module level: run in the pool)

def _clean_task(task: StageTask, config: PrepConfig, backends: Backends, worker: dict[str, Any]) -> StageItem:
    item, timer = task.start(backends, worker), StepTimer()
    _data, loaded = _read_image(task, task.source, config, item)
    if loaded is None:
        return _finish(item, timer, "failed")
    del _data
    timer.lap("load")
    try:
        cleaned = clean_image(loaded.rgb, config, backends, timer)
    except Exception as exc:
        return _processing_failed(item, timer, exc)
    timer.restart()
    out = Path(task.output_dir)
    item.image, item.mask = f"{IMAGES_DIR}/{item.stem}.png", f"{MASKS_DIR}/{item.stem}.png"
    atomic_write_bytes(out / item.image, encode_png(cleaned.cleaned))
    atomic_write_bytes(out / item.mask, encode_png(cleaned.text_mask))
    item.text_boxes = [polygon_box(p) for p in cleaned.polygons]
    timer.lap("write")
    return _finish(item, timer, "ok", "")


def _crop_task(task: StageTask, config: PrepConfig, backends: Backends, worker: dict[str, Any]) -> StageItem:
    item, timer = task.start(backends, worker), StepTimer()
    _data, loaded = _read_image(task, task.source, config, item)
    del _data
    mask = _read_mask(task, config, item, loaded.rgb.shape) if loaded is not None else None
    if loaded is None or mask is None:
        return _finish(item, timer, "failed")
    timer.lap("load")
    try:
        cropped = crop_image(loaded.rgb, mask, config, backends, timer)
    except Exception as exc:
        return _processing_failed(item, timer, exc)
    item.subject_bboxes = [list(f.bbox) for f in cropped.figures]
    item.rejected = cropped.rejected
    timer.restart()
    out = Path(task.output_dir)
    for name, crop in zip(crop_names(item.stem, len(cropped.crops)), cropped.crops):
        rel = f"{IMAGES_DIR}/{name}.png"
        atomic_write_bytes(out / rel, encode_png(crop.image))
        item.crops.append(CropRecord(rel, "", "", list(crop.figure.bbox), list(crop.box), crop.cut_at))
    timer.lap("write")
    return _finish(item, timer, *crop_outcome(cropped, config))


def _caption_task(task: StageTask, config: PrepConfig, backends: Backends, worker: dict[str, Any]) -> StageItem:
    item, timer = task.start(backends, worker), StepTimer()
    sources, item.crops = item.crops, []  # a failed item lists no file: only the crops written below
    pngs: list[bytes] = []
    images: list[np.ndarray] = []
    for crop in sources:
        data, loaded = _read_image(task, crop.image, config, item)
        if data is None or loaded is None:
            return _finish(item, timer, "failed")
        if loaded.source_format != "PNG":  # copied byte for byte, so it must already be what the dataset holds
            return _finish(item, timer, "failed", f"{crop.image}: a {loaded.source_format} file, not a PNG")
        pngs.append(data)
        images.append(loaded.rgb)
    timer.lap("load")
    try:
        captions = caption_crops(images, config, backends, timer)
    except Exception as exc:
        return _processing_failed(item, timer, exc)
    timer.restart()
    crops = []
    for crop, caption, data in zip(sources, captions, pngs):
        image_rel, caption_rel = write_pair(Path(task.output_dir), Path(crop.image).stem, data, caption)
        crops.append(CropRecord(image_rel, caption_rel, caption, crop.subject_bbox, crop.crop_box, crop.cut_at))
    item.crops = crops
    timer.lap("write")
    return _finish(item, timer, "ok")  # the reason of crop_subjects (small figures left out) stays


# ---------------------------------------------------------------- planning: what a stage reads

def _plan_folder(src: Path, out: Path, config: PrepConfig) -> _Plan:
    """The top-level images of a plain folder, scanned and size-checked as prepare() does."""
    try:
        scan = scan_inputs(src)
    except FileNotFoundError as exc:
        raise PrepError(str(exc)) from None
    stems = output_stems(scan.images)
    tasks: list[StageTask] = []
    carried: list[StageItem] = []
    for path in scan.images:
        item = StageItem(input=path.name, stem=stems[path.name])
        try:
            st = path.stat()
            check_file_bytes(st.st_size, config.max_file_bytes)
        except (ImageLoadError, OSError) as exc:  # refused from its size, before it is read
            item.reason = input_problem(exc)
            carried.append(item)
            continue
        item.size, item.mtime_ns = st.st_size, st.st_mtime_ns
        tasks.append(StageTask(item, str(src), str(out), source=path.name, fresh=True))
    carried += [StageItem(input=p.name, status="skipped", reason=reason) for p, reason in scan.unsupported]
    return _Plan(tasks, carried, [{"input": name, "reason": reason} for name, reason in scan.ignored])


def _read_manifest(path: Path, stage: str) -> dict[str, Any] | None:
    """``path`` when it is the manifest of ``stage``; None when absent or another stage's (``data.get('stage')``)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PrepError(f"{path}: unreadable manifest ({exc}); nothing was changed") from None
    if not isinstance(data, dict) or data.get("stage") != stage:
        return None
    if not isinstance(data.get("items"), list):
        raise PrepError(f"{path}: a {stage} manifest without an 'items' list; nothing was changed")
    return data


def _manifest_items(data: dict[str, Any], path: Path, root: Path) -> list[StageItem]:
    """The manifest's items, each file path checked to stay inside ``root`` before anything reads or deletes it."""
    items = []
    for i, raw in enumerate(data["items"]):
        try:
            item = StageItem.from_dict(raw)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            raise PrepError(f"{path}: item {i} is malformed ({exc}); nothing was changed") from None
        try:
            for rel in item.output_files():
                resolve_inside(root, rel, f"{path}: item {item.input!r}")
        except UnsafePathError as exc:
            raise PrepError(f"unsafe path in a manifest, nothing was changed: {exc}") from None
        items.append(item)
    return items


def _listed(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _plan_upstream(src: Path, out: Path, data: dict[str, Any], make_task: Callable[[StageItem], StageTask]) -> _Plan:
    """Inputs from an earlier stage's manifest: its ok items become tasks, the others are carried through."""
    tasks: list[StageTask] = []
    carried: list[StageItem] = []
    for item in _manifest_items(data, src / MANIFEST, src):
        if item.status == "ok":
            tasks.append(make_task(item))
        else:
            carried.append(dataclasses.replace(item, timings_ms={}, worker={}))
    backends = data.get("backends") if isinstance(data.get("backends"), dict) else {}
    why = backends.get("why") if isinstance(backends.get("why"), dict) else {}
    upstream = [*_listed(data, "upstream"),
                {"stage": data.get("stage"), "input_dir": data.get("input_dir"), "config": data.get("config")}]
    return _Plan(tasks, carried, _listed(data, "ignored"),
                 {str(k): [str(n) for n in v] for k, v in why.items() if isinstance(v, list)}, upstream)


def _plan_clean(src: Path, out: Path, config: PrepConfig) -> _Plan:
    return _plan_folder(src, out, config)


def _plan_crop(src: Path, out: Path, config: PrepConfig) -> _Plan:
    data = _read_manifest(src / MANIFEST, CLEAN)
    if data is None:  # plain images (another tool's manifest.json is just a file): no text known, empty mask
        return _plan_folder(src, out, config)

    def task(item: StageItem) -> StageTask:
        fresh = dataclasses.replace(item, status="failed", reason="", image="", mask="", subject_bboxes=[],
                                    rejected=[], crops=[], timings_ms={}, worker={})
        return StageTask(fresh, str(src), str(out), source=item.image, mask=item.mask)

    return _plan_upstream(src, out, data, task)


def _plan_caption(src: Path, out: Path, config: PrepConfig) -> _Plan:
    data = _read_manifest(src / MANIFEST, CROP)
    if data is None:
        raise PrepError(f"{str(src)!r} holds no {MANIFEST} of {CROP}: {CAPTION} reads the output folder of {CROP}")

    def task(item: StageItem) -> StageTask:
        return StageTask(dataclasses.replace(item, timings_ms={}, worker={}), str(src), str(out))

    return _plan_upstream(src, out, data, task)


# ---------------------------------------------------------------- running a stage

@dataclasses.dataclass(frozen=True)
class _Stage:
    name: str
    needs: tuple[str, ...]  # backend kinds loaded (BACKEND_KINDS)
    steps: tuple[str, ...]  # timed steps, for totals.step_ms_mean
    dirs: tuple[str, ...]   # folders it writes under the output dir (the only places it deletes from)
    plan: Callable[[Path, Path, PrepConfig], _Plan]
    work: Callable[[StageTask, PrepConfig, Backends, dict[str, Any]], StageItem]
    dataset: bool = False   # also write metadata.jsonl and report.json (prepare()'s dataset layout)


def _previous_outputs(out: Path, stage: _Stage) -> tuple[list[Path], list[Any]]:
    """Files the last complete run of this stage wrote in ``out``, all checked before any is deleted, and its items.

    Read from the manifest, or from the marker a run that did not finish left in its place.
    """
    path = next((p for p in (out / MANIFEST, out / INCOMPLETE) if p.is_file()), None)
    if path is None:
        return [], []
    data = _read_manifest(path, stage.name)
    if data is None:  # written by something else: overwriting it would lose track of that output
        raise PrepError(f"{str(out)!r} holds a {path.name} that is not {stage.name}'s: write {stage.name} "
                        "into another folder; nothing was changed")
    files = []
    for item in _manifest_items(data, path, out):
        for rel in item.output_files():
            if Path(rel).parts[0] not in stage.dirs:  # ours are all under these: never delete elsewhere
                raise PrepError(f"{path}: item {item.input!r} lists {rel!r}, outside {', '.join(stage.dirs)}/ "
                                "of the output directory; nothing was changed")
            files.append(out / rel)
    return files, data["items"]


def _begin(out: Path, stage: _Stage, previous_items: list[Any]) -> None:
    """Replace the manifest with the marker: a run that crashes from here on leaves no manifest claiming the folder."""
    atomic_write_json(out / INCOMPLETE, {
        "stage": stage.name,
        "incomplete": f"a {stage.name} run into this folder started and has not finished; the items are what the "
                      f"last complete run wrote (removed when stale); {MANIFEST} is written at the end",
        "items": previous_items})
    for name in (MANIFEST, *(("report.json", "metadata.jsonl") if stage.dataset else ())):
        (out / name).unlink(missing_ok=True)


def _check_folders(stage: _Stage, src: Path, out: Path) -> None:
    """Refuse an input folder that is the output folder or lies inside it, or that a crashed run left incomplete."""
    if src.resolve() == out.resolve() or src.resolve().is_relative_to(out.resolve()):
        raise PrepError(f"the output directory must differ from the input directory and must not contain it: "
                        f"{stage.name} would write over its inputs (input {str(src)!r}, output {str(out)!r}); "
                        "nothing was changed")
    if (src / INCOMPLETE).is_file() and not (src / MANIFEST).is_file():
        raise PrepError(f"{str(src)!r} holds {INCOMPLETE} and no {MANIFEST}: the run that writes it did not finish "
                        f"(it crashed or is still running); run that stage into it again before {stage.name} "
                        "reads it; nothing was changed")


def _check_reads(stage: _Stage, plan: _Plan, out: Path) -> None:
    """Refuse a file to read that lies in a folder the stage writes (a link into it): it could be written over."""
    written = {out.resolve(), *((out / name).resolve() for name in stage.dirs)}
    for task in plan.tasks:
        for rel in filter(None, (task.source, task.mask, *(crop.image for crop in task.item.crops))):
            path = Path(task.input_dir) / rel
            if path.resolve().parent in written:
                raise PrepError(f"input {str(path)!r} resolves to {str(path.resolve())!r}, in a folder "
                                f"{stage.name} writes in the output directory {str(out)!r}: it could be written "
                                "over; nothing was changed")


def _remove_stale(out: Path, previous: list[Path], items: list[StageItem]) -> None:
    keep = {(out / rel).resolve() for item in items for rel in item.output_files()}
    for path in previous:
        if path.resolve() not in keep and (path.is_file() or path.is_symlink()):
            path.unlink()


def _totals(stage: _Stage, plan: _Plan, processed: set[str], items: list[StageItem], elapsed: float,
            workers: int) -> dict[str, Any]:
    totals = summarize(items, elapsed, workers, unsupported=[i.input for i in items if i.input not in processed],
                       ignored=len(plan.ignored), steps=stage.steps)
    del totals["resumed"]  # the stages never resume
    totals["carried"] = totals.pop("unsupported")  # reported without being processed by this stage
    totals["images_written"] = sum(i.images_written() for i in items if i.status == "ok")
    return totals


def _run(stage: _Stage, config: PrepConfig, input_dir: str | os.PathLike, output_dir: str | os.PathLike,
         on_start: Callable[[int, int], None] | None, on_item: Callable[[StageItem], None] | None) -> StageReport:
    src, out = Path(input_dir), Path(output_dir)
    if not src.is_dir():
        raise PrepError(f"input directory {str(src)!r} does not exist or is not a directory")
    _check_folders(stage, src, out)
    plan = stage.plan(src, out, config)
    _check_reads(stage, plan, out)
    previous, previous_items = _previous_outputs(out, stage)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for name in stage.dirs:
            resolve_inside(out, name, f"output directory {str(out)!r}")
    except UnsafePathError as exc:
        raise PrepError(f"unsafe output directory, nothing was changed: {exc}") from None
    for name in stage.dirs:
        (out / name).mkdir(exist_ok=True)
    _begin(out, stage, previous_items)

    items = list(plan.carried)
    if on_start:
        on_start(len(plan.carried) + len(plan.tasks), len(plan.tasks))
    for item in plan.carried:
        if on_item:
            on_item(item)
    notes: dict[str, set[str]] = {k: set(v) for k, v in plan.why.items()}

    def finish(item: StageItem) -> None:
        for key, note in (item.worker.pop("backend_notes", None) or {}).items():
            notes.setdefault(key, set()).add(note)
        items.append(item)
        if on_item:
            on_item(item)

    start = time.perf_counter()
    run_tasks(stage.work, plan.tasks, config, workers=config.workers, needs=stage.needs, on_result=finish)
    elapsed = time.perf_counter() - start
    items.sort(key=lambda r: r.input)
    _remove_stale(out, previous, items)
    processed = {task.item.input for task in plan.tasks}  # carried items name an earlier stage's backends only
    used = sorted({tuple(sorted(r.backends.items())) for r in items if r.backends and r.input in processed})
    report = StageReport(stage=stage.name, input_dir=str(src), output_dir=str(out), manifest_path=out / MANIFEST,
                         items=items, totals=_totals(stage, plan, processed, items, elapsed, config.workers),
                         backends={"used": [dict(b) for b in used], "why": {k: sorted(v) for k, v in notes.items()}},
                         config=to_dict(config), ignored=plan.ignored, upstream=plan.upstream)
    if stage.dataset:
        store = DatasetStore(out)
        store.write_metadata(list(items))
        store.write_report(report.to_dict())
    atomic_write_json(report.manifest_path, report.to_dict())  # last: a complete manifest means a complete stage
    (out / INCOMPLETE).unlink(missing_ok=True)
    return report


_CLEAN = _Stage(CLEAN, ("text_detector",), ("load", "detect", "inpaint", "write"), (IMAGES_DIR, MASKS_DIR),
                _plan_clean, _clean_task)
_CROP = _Stage(CROP, ("segmenter",), ("load", "segment", "crop", "write"), (IMAGES_DIR,), _plan_crop, _crop_task)
_CAPTION = _Stage(CAPTION, ("captioner",), ("load", "caption", "write"), (IMAGES_DIR,), _plan_caption,
                  _caption_task, dataset=True)

OnStart = Callable[[int, int], None]
OnItem = Callable[[StageItem], None]


def clean_text(config: PrepConfig, input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
               on_start: OnStart | None = None, on_item: OnItem | None = None) -> StageReport:
    """Detect and inpaint the text of the top-level images of ``input_dir`` (loads the text detector only).

    Writes ``images/<stem>.png`` (cleaned), ``masks/<stem>.png`` (text mask) and ``manifest.json``.
    ``on_start(total, to_process)`` and ``on_item(item)`` report progress; bad inputs become failed or
    skipped items with a reason and the batch goes on.
    """
    return _run(_CLEAN, config, input_dir, output_dir, on_start, on_item)


def crop_subjects(config: PrepConfig, input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                  on_start: OnStart | None = None, on_item: OnItem | None = None) -> StageReport:
    """Segment and square-crop the subjects of clean_text's output (loads the segmenter only).

    A plain folder of images (no manifest) is read too, with an empty text mask. Writes
    ``images/<stem>.png`` or ``images/<stem>-fig<N>.png`` per figure and ``manifest.json``.
    """
    return _run(_CROP, config, input_dir, output_dir, on_start, on_item)


def caption_dataset(config: PrepConfig, input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                    on_start: OnStart | None = None, on_item: OnItem | None = None) -> StageReport:
    """Caption crop_subjects' crops into a training dataset laid out as prepare() writes it (loads the captioner only).

    The crops are copied byte for byte; ``images/<name>.txt``, ``metadata.jsonl``, ``report.json`` and
    ``manifest.json`` are written beside them. Re-running with another trigger re-captions without
    text detection or segmentation.
    """
    return _run(_CAPTION, config, input_dir, output_dir, on_start, on_item)
