"""FigureNet: input layout, the bundled network, training and export on a few panels."""

import numpy as np
import pytest

from fitad.prep.config import PrepConfig
from fitad.prep.figurenet import BUNDLED, INPUT_SIDE, STRIDE, FigureNetSegmenter, TrainSettings, prepare_input
from fitad.prep.segment import make_segmenter, resolve_segmenter


def test_input_keeps_the_aspect_ratio_and_pads_to_the_stride():
    rgb = np.full((300, 600, 3), 255, np.uint8)
    text = np.zeros((300, 600), np.uint8)
    text[:150, :300] = 255
    x, (w, h) = prepare_input(rgb, text)
    assert (w, h) == (INPUT_SIDE, INPUT_SIDE // 2)
    assert x.shape == (1, 4, -(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE)
    assert np.allclose(x[0, :3, :h, :w], 1.0) and np.all(x[0, :, h:, :] == 0)   # white in [-1, 1]; zero padding
    assert x[0, 3, : h // 2 - 1, : w // 2 - 1].min() == pytest.approx(1.0) and x[0, 3, h // 2 + 1:, :].max() == 0.0


def test_the_bundled_network_is_the_default_for_panels_but_not_for_photos(monkeypatch, tmp_path):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))                             # no rembg model there
    assert BUNDLED.is_file() and BUNDLED.stat().st_size < 2 * 2**20
    assert resolve_segmenter(PrepConfig()) == "figurenet"
    assert resolve_segmenter(PrepConfig(), content="photo") == "opencv"
    segmenter, why = make_segmenter(PrepConfig(), threads=1)
    assert segmenter.name == "figurenet" and "auto" in why
    from fitad.config import ConfigError

    with pytest.raises(ConfigError, match="figurenet_model = .*none.onnx.*no such file"):
        PrepConfig(segmenter="figurenet", figurenet_model=str(tmp_path / "none.onnx"))


def test_the_bundled_network_finds_a_drawn_figure_and_not_the_empty_paper():
    from .conftest import figure_panel, iou

    rgb, truth = figure_panel(size=(360, 300), figures=((60, 60), (220, 80)))
    mask = FigureNetSegmenter(threads=1).segment(rgb)
    assert mask.shape == truth.shape and iou(mask, truth) >= 0.8
    blank = np.full((300, 360, 3), 250, np.uint8)
    assert np.count_nonzero(FigureNetSegmenter(threads=1).segment(blank)) < 0.01 * blank.shape[0] * blank.shape[1]


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="at least 8 panels"):
        TrainSettings(synth_panels=2, styles_panels=2)
    with pytest.raises(ValueError, match="epochs"):
        TrainSettings(epochs=0)


def test_training_on_a_few_panels_exports_a_network_the_segmenter_runs(tmp_path):
    """The smoke test of `fitad prep train-figurenet`: draw, clean, train one epoch, export, load, segment."""
    from fitad.prep.figurenet import train

    out = tmp_path / "net.onnx"
    messages = []
    stats = train(TrainSettings(synth_panels=4, styles_panels=4, epochs=1, batch=4), out, tmp_path / "work",
                  progress=messages.append)
    assert out.is_file() and stats["epoch"] == 1 and np.isfinite(stats["loss"])
    assert any("epoch 1/1" in m for m in messages) and any("styles" in m for m in messages)
    segmenter = FigureNetSegmenter(out, threads=1)
    rgb = np.full((200, 330, 3), 240, np.uint8)                                 # any size: dynamic axes
    mask = segmenter.segment(rgb)
    assert mask.shape == (200, 330) and set(np.unique(mask)) <= {0, 255}
