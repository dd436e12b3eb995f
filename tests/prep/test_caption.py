import numpy as np
import pytest

from fitad.prep.caption import BlipCaptioner, TemplateCaptioner, clean_caption, compose_caption, make_captioner
from fitad.prep.config import PrepConfig


def test_template_caption_is_trigger_and_class_word():
    assert TemplateCaptioner().describe(np.zeros((8, 8, 3), np.uint8)) == ""
    assert compose_caption("sks", "girl", "") == "sks girl"
    assert compose_caption("sks", "", "") == "sks"


def test_caption_cleanup():
    assert compose_caption("sks", "girl", "  arafed woman   standing  standing with sks hat .") == \
        "sks girl, woman standing with hat"
    assert clean_caption("SKS a cat, , on a mat", trigger="sks") == "a cat, on a mat"
    assert compose_caption("sks", "", "sks-like logo") == "sks, sks-like logo"  # only whole words


@pytest.fixture(scope="module")
def tiny_blip(tiny_models_root):
    from fitad.zoo import ensure_tiny

    return ensure_tiny("tiny-blip", tiny_models_root)


def test_blip_on_tiny_model(tiny_blip):
    cfg = PrepConfig(captioner="blip", caption_model=str(tiny_blip), caption_max_length=12, caption_num_beams=2)
    captioner, why = make_captioner(cfg, device="cpu", threads=1)
    assert isinstance(captioner, BlipCaptioner) and why.startswith("blip")
    text = captioner.describe(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert isinstance(text, str)
    caption = compose_caption("sks", "girl", text)
    assert caption.startswith("sks girl") and caption.split().count("sks") == 1


def test_missing_blip_model_is_a_clear_error_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="prep.caption_model"):
        BlipCaptioner(PrepConfig(captioner="blip", caption_model=str(tmp_path / "no-such-model")))
    with pytest.raises(FileNotFoundError, match="could not load BLIP model 'someone/not-cached'.*local files"):
        BlipCaptioner(PrepConfig(captioner="blip", caption_model="someone/not-cached"))
