"""``fitad export``: options, what it prints, and clear errors (src/fitad/cli/export.py)."""

from __future__ import annotations

from click.testing import CliRunner
from safetensors import safe_open

from fitad.cli import cli


def test_export_command_writes_and_reports(make_adapter, tmp_path):
    adapter = make_adapter(family="sd15", rank=4, alpha=2.0)
    out = tmp_path / "exported" / "sks.safetensors"
    params = tmp_path / "params.yaml"
    params.write_text("export:\n  dtype: float16\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["export", str(adapter.lora_dir), "--out", str(out), "--params", str(params),
                                      "--set", "output_name=sks_v1"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    assert "(kohya, sd15 lora)" in result.output and "rank 4, alpha 2" in result.output
    assert "keys" in result.output and "MiB" in result.output
    with safe_open(str(out), framework="pt") as handle:
        assert handle.metadata()["ss_output_name"] == "sks_v1"
        key = next(k for k in handle.keys() if k.endswith(".lora_down.weight"))
        assert str(handle.get_tensor(key).dtype) == "torch.float16"  # from params.yaml


def test_export_command_format_option_and_errors(make_adapter, tmp_path):
    adapter = make_adapter(family="flux", rank=2, alpha=2.0)
    result = CliRunner().invoke(cli, ["export", str(adapter.lora_dir), "--format", "diffusers"])
    assert result.exit_code == 0, result.output
    run_dir = adapter.lora_dir.parent
    assert (run_dir / f"{run_dir.name}.diffusers.safetensors").is_file()
    missing = CliRunner().invoke(cli, ["export", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "nope: LoRA directory does not exist" in missing.output
    bad = CliRunner().invoke(cli, ["export", str(adapter.lora_dir), "--set", "dtype=int4"])
    assert bad.exit_code != 0 and "export.dtype" in bad.output


def test_export_help_explains_options():
    result = CliRunner().invoke(cli, ["export", "--help"])
    assert result.exit_code == 0
    for word in ("--out", "--format", "kohya", "diffusers", "--dtype", "ss_network_alpha"):
        assert word in result.output
