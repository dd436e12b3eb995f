import numpy as np
import pytest
from PIL import Image, ImageDraw

from fitad.prep.config import PrepConfig
from fitad.prep.segment import (OpenCVSegmenter, RembgSegmenter, fill_holes, frame_interior, make_segmenter,
                                rembg_model_file)

from .conftest import figure_panel, iou


@pytest.fixture
def opencv():
    return OpenCVSegmenter(PrepConfig())


def test_line_art_figures_inside_a_frame(opencv):
    rgb, truth = figure_panel(figures=((40, 60), (200, 80)))
    mask = opencv.segment(rgb)
    assert mask.shape == truth.shape and mask.dtype == np.uint8
    assert iou(mask, truth) > 0.85


def test_speech_balloon_that_held_text_is_not_a_subject(opencv):
    rgb, truth = figure_panel(figures=((40, 100),))
    img = Image.fromarray(rgb)
    ImageDraw.Draw(img).ellipse((170, 30, 330, 110), fill=(255, 255, 255), outline=(0, 0, 0), width=3)
    text = np.zeros(truth.shape, np.uint8)
    text[55:85, 200:300] = 255  # where the (already removed) text was
    with_hint = opencv.segment(np.asarray(img).copy(), text)
    assert iou(with_hint, truth) > 0.85
    assert not with_hint[70, 250]


def test_photo_without_outlines_uses_colour_and_grabcut(opencv):
    # No dark outlines: the line-art stage finds nothing and the colour + GrabCut stage takes over.
    yy, xx = np.mgrid[0:240, 0:320]
    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[:] = (225, 228, 232)
    disc = (xx - 160) ** 2 + (yy - 120) ** 2 < 70 ** 2
    shade = (1 - ((xx - 140) ** 2 + (yy - 100) ** 2) / 20000.0).clip(0.75, 1)
    rgb[disc] = (np.array([230, 120, 100]) * shade[disc, None]).astype(np.uint8)  # soft shaded ball
    mask = opencv.segment(rgb)
    assert iou(mask, disc.astype(np.uint8) * 255) > 0.85


def test_empty_image_gives_empty_mask(opencv):
    assert not opencv.segment(np.full((200, 200, 3), 245, np.uint8)).any()


def test_large_image_is_segmented_downscaled_and_mask_upsampled():
    rgb, truth = figure_panel(size=(360, 300), figures=((60, 60),))
    big_rgb = np.repeat(np.repeat(rgb, 4, 0), 4, 1)
    big_truth = np.repeat(np.repeat(truth, 4, 0), 4, 1)
    mask = OpenCVSegmenter(PrepConfig(segment_max_side=400)).segment(big_rgb)
    assert mask.shape == big_truth.shape and iou(mask, big_truth) > 0.8


def test_frame_interior_and_fill_holes():
    dark = np.zeros((100, 120), bool)
    dark[:4], dark[-4:], dark[:, :4], dark[:, -4:] = True, True, True, True
    assert frame_interior(dark) == (4, 4, 116, 96)
    ring = np.zeros((30, 30), np.uint8)
    ring[5:25, 5], ring[5:25, 24], ring[5, 5:25], ring[24, 5:25] = 255, 255, 255, 255
    assert fill_holes(ring)[15, 15] == 255 and fill_holes(ring)[2, 2] == 0


# ---------------------------------------------------------------- rembg with a tiny ONNX model

def write_tiny_u2net(path):
    """An ONNX model with U^2-Net's interface: 1x3x320x320 in, 1x1x320x320 out (darkness of the pixel)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])
    y = helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, 320, 320])
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("Neg", ["mean"], ["d0"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny_u2net", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture
def u2net_home(tmp_path, monkeypatch):
    home = tmp_path / "u2net"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    write_tiny_u2net(home / "tiny_u2net.onnx")
    return home


def test_rembg_custom_model_through_u2net_custom(u2net_home):
    cfg = PrepConfig(segmenter="rembg", rembg_model="tiny_u2net.onnx")
    segmenter, why = make_segmenter(cfg, threads=1)
    assert isinstance(segmenter, RembgSegmenter) and segmenter.model == "u2net_custom"
    rgb = np.full((200, 260, 3), 250, np.uint8)
    rgb[50:150, 80:180] = 20  # a dark square on white: the tiny model marks dark pixels
    mask = segmenter.segment(rgb)
    truth = np.zeros((200, 260), np.uint8)
    truth[50:150, 80:180] = 255
    assert mask.shape == (200, 260) and iou(mask, truth) > 0.8


def test_auto_picks_rembg_only_when_the_model_file_is_there(u2net_home, monkeypatch):
    assert rembg_model_file("isnet-anime") is None
    seg, why = make_segmenter(PrepConfig(segmenter="auto", rembg_model="isnet-anime"))
    assert seg.name == "figurenet" and "no rembg model 'isnet-anime'" in why      # the bundled network
    monkeypatch.setattr("fitad.prep.figurenet.BUNDLED", u2net_home / "none.onnx")   # a package without it
    seg, why = make_segmenter(PrepConfig(segmenter="auto"))
    assert isinstance(seg, OpenCVSegmenter) and "no rembg model 'isnet-anime'" in why   # neither file: rules
    seg, why = make_segmenter(PrepConfig(segmenter="auto", rembg_model="tiny_u2net.onnx"))
    assert isinstance(seg, RembgSegmenter) and "auto" in why


def test_rembg_missing_model_is_a_clear_error_not_a_download(u2net_home):
    with pytest.raises(FileNotFoundError, match="rembg model 'u2net' not found.*downloads are disabled"):
        make_segmenter(PrepConfig(segmenter="rembg", rembg_model="u2net"))


def test_named_rembg_model_found_in_u2net_home_is_used_without_download(u2net_home):
    write_tiny_u2net(u2net_home / "u2net.onnx")
    segmenter, why = make_segmenter(PrepConfig(segmenter="auto", rembg_model="u2net"), threads=1)
    assert isinstance(segmenter, RembgSegmenter) and segmenter.model == "u2net"
    rgb = np.full((120, 120, 3), 250, np.uint8)
    rgb[30:90, 30:90] = 10
    assert segmenter.segment(rgb)[60, 60] == 255 and segmenter.segment(rgb)[5, 5] == 0
