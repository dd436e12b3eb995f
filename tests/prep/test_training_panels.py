"""Training panels of the prep networks: drawn in parts on several processes, the same panels as in one go."""

import json
from pathlib import Path

import pytest

from fitad.prep.training_panels import draw_panels


def image_of(meta_path: Path) -> Path:
    return meta_path.parent / json.loads(meta_path.read_text(encoding="utf-8"))["image"]


def texts_of(meta_path: Path) -> list:
    return json.loads(meta_path.read_text(encoding="utf-8"))["texts"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> list[Path]:
    return draw_panels(tmp_path_factory.mktemp("one"), 3, 3, seed=123, workers=1)


def test_panels_drawn_on_two_processes_are_the_panels_drawn_on_one(one_process, tmp_path):
    two = draw_panels(tmp_path, 3, 3, seed=123, workers=2)
    assert len(one_process) == len(two) == 6
    assert all(p.suffix == ".json" and p.is_file() for p in one_process + two)
    assert all(tmp_path in p.parents for p in two)
    assert [p.parent.parent.name for p in two] == ["synth-3-123"] * 3 + ["styles-3-123"] * 3
    assert len({p.parent for p in two}) > len({p.parent for p in one_process})   # really drawn in more parts
    for a, b in zip(one_process, two):
        assert image_of(a).read_bytes() == image_of(b).read_bytes()
        assert texts_of(a) == texts_of(b)
    assert len({image_of(p).read_bytes() for p in two}) == 6                     # six different panels


def test_panels_are_those_the_generators_draw_in_one_go(one_process, tmp_path):
    from fitad.config import SynthConfig
    from fitad.synth import synthesize
    from fitad.synth_styles import synthesize_styles

    synth = synthesize(SynthConfig(n=3, seed=123), tmp_path / "synth", progress=False)
    styles = synthesize_styles(tmp_path / "styles", 3, seed=123, split="dev")
    direct = [Path(p) for p in synth + styles]
    assert len(direct) == 6
    assert [image_of(p).read_bytes() for p in one_process] == [p.read_bytes() for p in direct]


def test_other_seeds_draw_other_panels(one_process, tmp_path):
    other = draw_panels(tmp_path, 1, 1, seed=124, workers=1)
    assert [image_of(p).read_bytes() for p in other] == [image_of(one_process[1]).read_bytes(),
                                                          image_of(one_process[4]).read_bytes()]
    assert image_of(other[0]).read_bytes() != image_of(one_process[0]).read_bytes()


def test_no_panels_asked_for_none_drawn(tmp_path):
    assert draw_panels(tmp_path, 0, 0, seed=1, workers=2) == []
    assert not any(tmp_path.iterdir())


def test_a_smaller_run_in_the_same_folder_gets_only_its_own_panels(tmp_path):
    first = draw_panels(tmp_path, 0, 4, seed=5)
    second = draw_panels(tmp_path, 0, 2, seed=5)
    assert len(first) == 4 and len(second) == 2
    def pictures(paths):
        return [(p.parent / json.loads(p.read_text())["image"]).read_bytes() for p in paths]

    assert pictures(second) == pictures(first[:2])
