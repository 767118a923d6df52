"""The GPU benchmark's CPU dry run: the whole script (data stage, train twice, embed, bare passes) on tiny sizes.

It checks that the script runs end to end and reports every figure; the figures themselves are
only meaningful on a GPU (benchmarks/gpu.sh).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def test_dry_run_reports_every_figure(fashion_dir, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "figures.json"
    figures = bench.main(["--dry-run", "--json", str(out)])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text())["device"] == "cpu (dry run)"
    train, embed = figures["train"], figures["embed"]["none"]
    assert train["long_run"]["steps"] == 3 and train["short_run"]["steps"] == 1
    assert train["steady_ips"] > 0 and train["epoch_60k_s"] == pytest.approx(60_000 / train["steady_ips"])
    assert embed["training_rows"] == 96 and embed["rows"] == 96 + 32
    assert embed["bare_ips"] > 0 and embed["ratio"] == pytest.approx(embed["steady_ips"] / embed["bare_ips"])
    assert "| embed [none]: stage / bare forward |" in printed
    assert "dry run on CPU: the figures check the script, not the targets" in printed
