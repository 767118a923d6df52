"""The monitoring pipeline names its model <name>@production: resolved through kfp.local (stand-in stages)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from components.common import registry
from components.pipelines import cli
from tests.pipeline import fakes

from .conftest import write_model_folder


def test_monitoring_runs_on_the_production_model_of_the_registry(monkeypatch, tmp_path):
    fakes.use_fake_stages(monkeypatch)  # the stages are stand-ins; resolve-model is the real helper
    root = str(tmp_path / "registry")
    reg = registry.open_registry(root, "fashion")
    first = write_model_folder(tmp_path / "runs" / "1" / "model", weights=b"first")
    second = write_model_folder(tmp_path / "runs" / "2" / "model", weights=b"second")
    reg.register(first, {}, {}, "run 1")
    reg.register(second, {}, {}, "run 2")
    reg.promote("v1", "first")
    reg.promote("v2", "better")
    reg.rollback("v2 misbehaves")  # production is v1 again
    (tmp_path / "batch").mkdir()
    (tmp_path / "baseline").mkdir()
    params = {
        "production_uri": tmp_path / "batch",
        "model_uri": "fashion@production",
        "registry_uri": root,
        "baseline_uri": tmp_path / "baseline",
    }
    args = ["run", "--local", "--pipeline", "monitoring", "--output-dir", str(tmp_path / "out")]
    for name, value in params.items():
        args += ["--param", f"{name}={value}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(args) == 0, err.getvalue()[-3000:]
    line = next(x for x in out.getvalue().splitlines() if x.startswith("resolve-model "))
    assert line.endswith(f"from {first}"), line
    (copied,) = (tmp_path / "out").glob("*/resolve-model/model")
    assert (copied / "model.safetensors").read_bytes() == b"first"
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in Path(first).iterdir())
