"""`fitad prep train-letternet` / `train-figurenet`: the commands train, export and refuse nonsense clearly."""

import json

import numpy as np
from click.testing import CliRunner

from fitad.cli import cli


def test_train_letternet_writes_a_network_the_stage_can_use(tmp_path):
    out = tmp_path / "nets" / "letters.onnx"
    result = CliRunner().invoke(cli, ["prep", "train-letternet", "--out", str(out), "--synth-panels", "4",
                                      "--styles-panels", "4", "--epochs", "1", "--device", "cpu",
                                      "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"] == str(out) and summary["epoch"] == 1 and np.isfinite(summary["loss"])
    assert out.is_file() and list((tmp_path / "work").glob("letter-pairs-4-4-60000-*.npz"))

    from fitad.prep.config import PrepConfig
    from fitad.prep.run import load_backends

    backends = load_backends(PrepConfig(letternet_model=str(out)), threads=1, needs=("text_detector",))
    assert backends.names()["text_detector"] == "rapidocr+letternet:letters.onnx"


def test_train_commands_refuse_too_few_panels_with_the_reason():
    for command in ("train-letternet", "train-figurenet"):
        result = CliRunner().invoke(cli, ["prep", command, "--synth-panels", "2", "--styles-panels", "2"])
        assert result.exit_code == 2 and "at least 8 panels" in result.output, result.output


def test_the_command_defaults_are_the_recipes_of_the_shipped_networks():
    from fitad.prep.figurenet import TrainSettings
    from fitad.prep.letternet import LetterTrainSettings

    for command, settings in (("train-figurenet", TrainSettings()), ("train-letternet", LetterTrainSettings())):
        params = {p.name: p.default for p in cli.commands["prep"].commands[command].params}
        assert (params["synth_panels"], params["styles_panels"], params["seed"], params["epochs"]) == (
            settings.synth_panels, settings.styles_panels, settings.seed, settings.epochs)
        assert params["workers"] == 1 and params["device"] == "auto"
