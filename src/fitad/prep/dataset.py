"""The prepared dataset on disk: images + captions, metadata.jsonl, report.json, and resume state.

Layout of ``OUTPUT_DIR``::

    images/<stem>.png, images/<stem>.txt   kohya-style image + caption pairs (our trainer reads them too)
    metadata.jsonl                          {"file_name": "images/<stem>.png", "text": ...} for HF imagefolder
    report.json                             per input: status, reason, boxes, bboxes, backends, timings; totals
    .prep-state/<input name>.json           one record per input, written as soon as it is done

The state records make an interrupted run resumable: an input whose content hash and config
fingerprint match its record, and whose outputs still exist, is not processed again. A record also
keeps the input's size and modification time, so an unchanged input is recognised without being read.

Paths read back from state records are checked before any file is read or deleted through them:
one that leaves the output directory (``..``, an absolute path, a symlink pointing out) raises
:class:`~fitad.paths.UnsafePathError` naming the state file, the record and the path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from fitad.fsutil import atomic_write_json, atomic_write_text
from fitad.paths import UnsafePathError, resolve_inside

__all__ = ["CropRecord", "DatasetStore", "ItemRecord", "UnsafePathError", "output_stems"]

STATUSES = ("ok", "skipped", "failed")
STATE_DIR = ".prep-state"
IMAGES_DIR = "images"


@dataclasses.dataclass
class CropRecord:
    image: str           # relative to the output dir
    caption_file: str
    caption: str
    subject_bbox: list[int]
    crop_box: list[int]  # square box in source pixels; may reach outside the image (padded)
    # image edges the subject touches: the figure may go on beyond the picture, so the crop may not hold all of it
    cut_at: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ItemRecord:
    """What happened to one input file."""

    input: str
    status: str = "failed"
    reason: str = ""
    sha256: str = ""
    fingerprint: str = ""
    size: int = 0          # bytes and modification time of the input when it was read (0: unknown)
    mtime_ns: int = 0
    width: int = 0
    height: int = 0
    source_mode: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    text_boxes: list[list[int]] = dataclasses.field(default_factory=list)
    subject_bboxes: list[list[int]] = dataclasses.field(default_factory=list)
    rejected: list[str] = dataclasses.field(default_factory=list)
    crops: list[CropRecord] = dataclasses.field(default_factory=list)
    backends: dict[str, str] = dataclasses.field(default_factory=dict)
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    worker: dict[str, Any] = dataclasses.field(default_factory=dict)
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ItemRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["crops"] = [CropRecord(**c) for c in data.get("crops", [])]
        return cls(**data)

    def output_files(self) -> list[str]:
        return [p for c in self.crops for p in (c.image, c.caption_file)]


def output_stems(inputs: list[Path]) -> dict[str, str]:
    """Output stem per input name, unique over all inputs (compared case-insensitively).

    Inputs sharing a stem (``a.png``, ``a.jpg``) keep their extension; names that still clash after
    cleaning (``a b.png``, ``a_b.png``) get ``_2``, ``_3``, … in name order. A trailing ``-fig<N>``
    becomes ``_fig<N>``: that suffix is reserved for the crops of multi-figure inputs.
    """
    def safe(stem: str) -> str:
        stem = re.sub(r"[^\w.-]+", "_", stem).strip("._") or "image"
        return re.sub(r"-(fig\d+)$", r"_\1", stem)

    names = sorted(p.name for p in inputs)
    base = {name: safe(Path(name).stem) for name in names}
    counts = Counter(s.lower() for s in base.values())
    wanted = {name: (s if counts[s.lower()] == 1 else f"{s}_{Path(name).suffix.lstrip('.').lower()}")
              for name, s in base.items()}
    taken: set[str] = set()
    stems: dict[str, str] = {}
    for name in names:
        stem, n = wanted[name], 2
        while stem.lower() in taken:
            stem, n = f"{wanted[name]}_{n}", n + 1
        taken.add(stem.lower())
        stems[name] = stem
    return stems


class DatasetStore:
    """Reads and writes everything under the output directory."""

    def __init__(self, output_dir: str | os.PathLike):
        self.root = Path(output_dir)
        self.images = self.root / IMAGES_DIR
        self.state = self.root / STATE_DIR

    def prepare_dirs(self) -> None:
        """Create ``images/`` and ``.prep-state/``; either being a symlink out of the output dir is refused."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name in (IMAGES_DIR, STATE_DIR):
            resolve_inside(self.root, name, f"output directory {str(self.root)!r}")
        self.images.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ per-input state

    def _state_path(self, input_name: str) -> Path:
        return self.state / f"{input_name}.json"

    def load_record(self, input_name: str) -> ItemRecord | None:
        path = self._state_path(input_name)
        try:
            record = ItemRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None  # absent or unreadable (e.g. written by an older version): process again
        # a record filed under another input's name is not this input's record
        return record if record.input == input_name else None

    def output_paths(self, record: ItemRecord) -> list[Path]:
        """The record's output files as paths, each checked to lie inside the output directory.

        Raises UnsafePathError naming the state file, the record and the offending path.
        """
        source = f"{self._state_path(record.input)}: record of input {record.input!r}"
        return [resolve_inside(self.root, rel, source) for rel in record.output_files()]

    def save_record(self, record: ItemRecord) -> None:
        atomic_write_text(self._state_path(record.input), json.dumps(record.to_dict(), ensure_ascii=False))

    def up_to_date(self, previous: ItemRecord | None, sha256: str, fingerprint: str) -> bool:
        """Same content, same config, finished (not failed), and its outputs are still there."""
        return (previous is not None and previous.sha256 == sha256 and self.reusable(previous, fingerprint))

    def reusable(self, previous: ItemRecord | None, fingerprint: str) -> bool:
        """Same config, finished (not failed), and its outputs are still there (content not compared)."""
        return (previous is not None and previous.fingerprint == fingerprint
                and previous.status in ("ok", "skipped")
                and all(p.is_file() for p in self.output_paths(previous)))

    def remove_stale(self, previous: ItemRecord | None, current: ItemRecord) -> None:
        """Delete outputs an earlier run wrote for this input that the new run did not write again."""
        if previous is None:
            return
        keep = set(current.output_files())
        for rel, path in zip(previous.output_files(), self.output_paths(previous)):
            if rel not in keep:
                path.unlink(missing_ok=True)

    def check_state(self) -> None:
        """Check every state record's paths (UnsafePathError naming the first bad one); changes nothing."""
        if self.state.is_dir():
            for path in sorted(self.state.glob("*.json")):
                record = self.load_record(path.name[:-len(".json")])
                if record is not None:
                    self.output_paths(record)

    def prune(self, current_inputs: set[str]) -> list[str]:
        """Drop state and outputs of inputs that are no longer in the input directory."""
        removed = []
        if not self.state.is_dir():
            return removed
        for path in self.state.glob("*.json"):
            name = path.name[:-len(".json")]
            if name in current_inputs:
                continue
            record = self.load_record(name)
            for output in self.output_paths(record) if record else []:
                output.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            removed.append(name)
        return removed

    # ------------------------------------------------------------ dataset files

    def write_metadata(self, records: list[ItemRecord]) -> Path:
        lines = [json.dumps({"file_name": c.image, "text": c.caption}, ensure_ascii=False)
                 for r in records if r.status == "ok" for c in r.crops]
        return atomic_write_text(self.root / "metadata.jsonl", "".join(line + "\n" for line in lines))

    def write_report(self, report: dict[str, Any]) -> Path:
        return atomic_write_json(self.root / "report.json", report)
