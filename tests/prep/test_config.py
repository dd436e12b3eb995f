import pytest

from fitad.config import ConfigError, from_mapping, load_section
from fitad.prep.config import PrepConfig


def test_defaults_are_valid_and_embedded():
    cfg = PrepConfig()
    assert cfg.text_detector == "auto" and cfg.segmenter == "auto" and cfg.captioner == "template"
    assert cfg.inpaint_method == "ns" and cfg.resolution == 512


@pytest.mark.parametrize("key,value,needle", [
    ("resolution", 500, "prep.resolution"),
    ("resolution", 32, "prep.resolution"),
    ("inpaint_method", "fast", "prep.inpaint_method"),
    ("segmenter", "sam", "prep.segmenter"),
    ("crop_margin", 2.0, "prep.crop_margin"),
    ("workers", 0, "prep.workers"),
    ("trigger", "two words", "prep.trigger"),
    ("max_pixels", 10, "prep.max_pixels"),
])
def test_bad_values_name_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        from_mapping(PrepConfig, {key: value})


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(PrepConfig, {"resolutoin": 512})


def test_fingerprint_tracks_outputs_not_runtime():
    base = PrepConfig()
    assert base.fingerprint() == PrepConfig(workers=4, device="cpu").fingerprint()
    assert base.fingerprint() != PrepConfig(resolution=1024).fingerprint()
    assert base.fingerprint() != PrepConfig(class_word="girl").fingerprint()


def test_params_section_loads(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("prep:\n  trigger: ohwx\n  resolution: 1024\n  segmenter: opencv\n")
    cfg = load_section(PrepConfig, params, {"class_word": "girl"})
    assert (cfg.trigger, cfg.resolution, cfg.segmenter, cfg.class_word) == ("ohwx", 1024, "opencv", "girl")
