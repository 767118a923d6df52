"""The drift stage's command line and its Config: options from the Config, exit codes, light imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq

from components.drift.__main__ import main, parser
from components.drift.config import DriftConfig


def test_options_come_from_the_config_under_their_pipeline_names():
    p = parser()
    args = p.parse_args(["folder", "--drift-window", "hourly", "--drift-resamples", "600", "--no-thumbnails"])
    assert (args.drift_window, args.drift_resamples, args.thumbnails) == ("hourly", 600, False)
    assert vars(p.parse_args(["folder"]))["detectors"] == DriftConfig().detectors
    flags = {flag for action in p._actions for flag in action.option_strings}
    assert "--window" not in flags and "--n-resamples" not in flags


def test_main_writes_the_outputs_and_exits_1_on_drift(prepared_dir, tmp_path):
    argv = [str(prepared_dir), "--report", str(tmp_path / "r.html"), "--table", str(tmp_path / "t.parquet")]
    argv += ["--metrics", str(tmp_path / "m.json"), "--projection", "pca", "--drift-resamples", "300"]
    argv += ["--false-alarm-rate", "0.02", "--umap-sample", "200", "--no-thumbnails"]
    assert main(argv) == 1
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert metrics["windows_flagged"] == 2.0 and metrics["windows"] == 10.0
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 10
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_main_exits_2_naming_a_bad_setting_or_file(tmp_path, capsys):
    assert main([str(tmp_path), "--drift-window", "monthly"]) == 2
    assert "error: drift_window='monthly': expected one of hourly, daily, weekly" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "production.parquet: missing" in capsys.readouterr().err


def test_the_config_and_the_command_line_import_no_heavy_library():
    code = (
        "import sys, components.drift.config, components.drift.__main__ as m; m.parser().format_help(); "
        "print(sorted(k for k in ('pandas', 'scipy', 'sklearn', 'umap', 'plotly', 'tqdm') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
