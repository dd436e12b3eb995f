"""Hyperparameters of data preparation (section ``prep`` of params.yaml)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import ClassVar

from fitad.config import ConfigError, check_choice, check_range

TEXT_DETECTORS = ("auto", "rapidocr", "easyocr")
SEGMENTERS = ("auto", "rembg", "figurenet", "opencv")
CAPTIONERS = ("template", "blip")
INPAINT_METHODS = ("ns", "telea")
PAD_MODES = ("auto", "white", "black", "edge")
DEVICES = ("auto", "cpu", "cuda")

# Fields that do not change what is written for an input; they stay out of the resume fingerprint.
# (max_file_bytes is checked on every run, before an input is read or resumed.)
_RUNTIME_ONLY = frozenset({"workers", "device", "allow_model_download", "max_file_bytes"})


@dataclasses.dataclass
class PrepConfig:
    """Text cleanup, subject crop and captioning of raw images into a training dataset."""

    SECTION: ClassVar[str] = "prep"

    # captions
    trigger: str = "sks"
    class_word: str = ""
    captioner: str = "template"
    caption_model: str = "Salesforce/blip-image-captioning-base"
    caption_max_length: int = 50
    caption_num_beams: int = 3
    allow_model_download: bool = False
    # text detection and removal
    text_detector: str = "auto"
    easyocr_model_dir: str = "~/.EasyOCR/model"
    detect_max_side: int = 960
    detect_small_side: int = 0      # a second pass on a copy this size (big lettering; LetterNet finds it now)
    detect_vertical: bool = False   # a pass on the image turned 90 degrees finds vertical text columns
    letternet: bool = True          # LetterNet marks lettering the detector misses (big sound effects)
    letternet_model: str = ""       # LetterNet ONNX file; empty: the one bundled with fitad
    text_box_threshold: float = 0.4
    text_unclip_ratio: float = 1.6
    text_drop_line_art: bool = True
    text_dilate_px: int = 4
    text_dilate_share: float = 0.1  # ... or this share of a box's shorter side if more (outlined lettering)
    inpaint_method: str = "ns"
    inpaint_radius: int = 3
    # segmentation
    segmenter: str = "auto"
    rembg_model: str = "isnet-anime"
    figurenet_model: str = ""       # FigureNet ONNX file; empty: the one bundled with fitad
    segment_max_side: int = 768
    mask_threshold: int = 128
    # crop
    resolution: int = 512
    crop_margin: float = 0.15
    pad_mode: str = "auto"
    figure_min_area: float = 0.004
    split_figures: bool = True
    min_subject_side: int = 48
    # input safety
    max_file_bytes: int = 200_000_000  # files above this size are refused from their size, before reading
    max_pixels: int = 64_000_000
    min_image_side: int = 32
    # execution
    workers: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        s = self.SECTION
        self.trigger = self.trigger.strip()
        self.class_word = (self.class_word or "").strip()
        if not self.trigger or any(c.isspace() for c in self.trigger):
            raise ConfigError(f"{s}.trigger = {self.trigger!r} is not allowed: one non-empty word, e.g. 'sks'")
        check_choice(s, "captioner", self.captioner, CAPTIONERS)
        if not str(self.caption_model).strip():
            raise ConfigError(f"{s}.caption_model: a model ID or directory is required")
        check_range(s, "caption_max_length", self.caption_max_length, lo=5, hi=512)
        check_range(s, "caption_num_beams", self.caption_num_beams, lo=1, hi=16)
        check_choice(s, "text_detector", self.text_detector, TEXT_DETECTORS)
        check_range(s, "detect_max_side", self.detect_max_side, lo=128, hi=4096)
        if self.detect_small_side:
            check_range(s, "detect_small_side", self.detect_small_side, lo=128, hi=self.detect_max_side - 1)
        if self.letternet_model and not Path(self.letternet_model).expanduser().is_file():
            raise ConfigError(f"{s}.letternet_model = {self.letternet_model!r}: no such file (leave it empty for the "
                              "network bundled with fitad, or make one with `fitad prep train-letternet`)")
        check_range(s, "text_box_threshold", self.text_box_threshold, lo=0.0, hi=1.0, lo_open=True)
        check_range(s, "text_unclip_ratio", self.text_unclip_ratio, lo=1.0, hi=4.0)
        check_range(s, "text_dilate_px", self.text_dilate_px, lo=0, hi=64)
        check_range(s, "text_dilate_share", self.text_dilate_share, lo=0.0, hi=0.5)
        check_choice(s, "inpaint_method", self.inpaint_method, INPAINT_METHODS)
        check_range(s, "inpaint_radius", self.inpaint_radius, lo=1, hi=32)
        check_choice(s, "segmenter", self.segmenter, SEGMENTERS)
        if self.figurenet_model and not Path(self.figurenet_model).expanduser().is_file():
            raise ConfigError(f"{s}.figurenet_model = {self.figurenet_model!r}: no such file (leave it empty for the "
                              "network bundled with fitad, or make one with `fitad prep train-figurenet`)")
        if not self.rembg_model.strip():
            raise ConfigError(f"{s}.rembg_model: a rembg model name is required, e.g. 'isnet-anime'")
        check_range(s, "segment_max_side", self.segment_max_side, lo=64, hi=2048)
        check_range(s, "mask_threshold", self.mask_threshold, lo=1, hi=254)
        check_range(s, "resolution", self.resolution, lo=64, hi=4096)
        if self.resolution % 8:
            raise ConfigError(f"{s}.resolution = {self.resolution} is not allowed: must be a multiple of 8")
        check_range(s, "crop_margin", self.crop_margin, lo=0.0, hi=1.0)
        check_choice(s, "pad_mode", self.pad_mode, PAD_MODES)
        check_range(s, "figure_min_area", self.figure_min_area, lo=0.0, hi=0.5, lo_open=True)
        check_range(s, "min_subject_side", self.min_subject_side, lo=1, hi=4096)
        check_range(s, "max_file_bytes", self.max_file_bytes, lo=1, hi=2**40)
        check_range(s, "max_pixels", self.max_pixels, lo=4096, hi=2_000_000_000)
        check_range(s, "min_image_side", self.min_image_side, lo=8, hi=4096)
        check_range(s, "workers", self.workers, lo=1, hi=64)
        check_choice(s, "device", self.device, DEVICES)

    def fingerprint(self) -> str:
        """Hash of every field that changes the outputs (used to decide whether a re-run may skip)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUNTIME_ONLY}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
