"""loss.csv: the loss curve a finished run writes beside metrics.jsonl (dvc.yaml plots it)."""

from __future__ import annotations

import csv
import json

import pytest

from fitad.train.config import SDLoraConfig
from fitad.train.loop import LOSS_CSV, METRICS, _write_loss_csv
from fitad.train.sd_lora import train_sd_lora


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_a_finished_run_writes_loss_csv_from_its_metrics(tiny_sd15, dataset_dir, tmp_path):
    cfg = SDLoraConfig(base_model=tiny_sd15, rank=4, resolution=64, batch_size=2, steps=3, log_every=1,
                       checkpoint_every=0, validation_every=0, lr_scheduler="linear", lr_warmup_steps=1)
    result = train_sd_lora(cfg, dataset_dir, tmp_path / "run", show_progress=False)

    path = tmp_path / "run" / LOSS_CSV
    assert path.read_text(encoding="utf-8").splitlines()[0] == "step,loss,lr"
    rows = _rows(path)
    records = [json.loads(line) for line in (tmp_path / "run" / METRICS).read_text().splitlines()]
    assert [int(r["step"]) for r in rows] == [1, 2, 3] == [r["step"] for r in records]
    for row, record in zip(rows, records):
        assert float(row["loss"]) == record["loss"]  # repr round-trips a float exactly
        assert float(row["lr"]) == record["lr"]
        assert float(row["loss"]) == pytest.approx(result.losses[int(row["step"])])
    assert float(rows[0]["lr"]) != float(rows[1]["lr"])  # the warmup shows in the lr column
    assert not list(path.parent.glob(f".{LOSS_CSV}.*"))  # written atomically: no temporary left


def test_loss_csv_skips_a_half_written_metrics_line(tmp_path):
    (tmp_path / METRICS).write_text('{"step": 1, "loss": 0.5, "lr": 0.001, "step_time_s": 1.0}\n'
                                    '{"step": 2, "loss": 0.25, "lr": 0.001}\n{"step": 3, "lo', encoding="utf-8")
    _write_loss_csv(tmp_path)
    assert _rows(tmp_path / LOSS_CSV) == [{"step": "1", "loss": "0.5", "lr": "0.001"},
                                          {"step": "2", "loss": "0.25", "lr": "0.001"}]


def test_loss_csv_without_metrics_has_only_the_header(tmp_path):
    _write_loss_csv(tmp_path)
    assert (tmp_path / LOSS_CSV).read_text(encoding="utf-8") == "step,loss,lr\n"
