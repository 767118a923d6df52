"""pipeline.py promote, rollback and models."""

from __future__ import annotations

import json

import pytest

from components.common import registry
from components.pipelines import cli


def _versions(root: str, config=None, n: int = 3) -> registry.Registry:
    reg = registry.open_registry(root, "fashion", config=config)
    for i in range(1, n + 1):
        reg.register(
            f"/models/m{i}", {"training": {"accuracy": 0.8 + i / 100, "f1_macro": 0.7}}, {}, f"run {i}"
        )
    return reg


@pytest.mark.parametrize("root", ["local", "s3"], indirect=True)
def test_promote_rollback_and_models(root, capsys, monkeypatch):
    uri, config = root  # the emulator's endpoint is in the environment: the commands read it there
    monkeypatch.setenv(registry.ENV_ACTOR, "alice@laptop")
    reg = _versions(uri, config)
    args = ["--registry", uri, "--model", "fashion"]

    assert cli.main(["promote", *args, "--version", "v1", "--reason", "first release"]) == 0
    assert capsys.readouterr().out.strip() == "fashion: v1 is in production: /models/m1"  # none before
    assert cli.main(["promote", *args, "--version", "v3", "--reason", "robust to blur"]) == 0
    assert "v3 is in production (was v1)" in capsys.readouterr().out
    assert cli.main(["rollback", *args, "--reason", "sandals misread"]) == 0
    assert capsys.readouterr().out.strip() == "fashion: rolled back to v1 (was v3): /models/m1"
    assert reg.production().version == "v1"

    assert cli.main(["models", *args]) == 0
    out = capsys.readouterr().out
    assert "production: v1 (/models/m1)" in out
    assert "v1     production" in out and "v3     retired" in out and "v2     candidate" in out
    assert "accuracy 0.8300" in out
    assert 'promote v1 (was none) by "alice@laptop": "first release"' in out
    assert "#6 " in out and 'rollback v1 (was v3) by "alice@laptop": "sandals misread"' in out

    assert cli.main(["models", *args, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["production"] == "v1"
    assert [v["stage"] for v in listing["versions"]] == ["production", "candidate", "retired"]
    assert [e["action"] for e in listing["history"]][-3:] == ["promote", "promote", "rollback"]


def test_clear_errors_and_exit_status_2(tmp_path, capsys):
    root = str(tmp_path / "registry")
    args = ["--registry", root, "--model", "fashion"]
    assert cli.main(["rollback", *args, "--reason", "x"]) == 2
    assert "no version of fashion is in production" in capsys.readouterr().err
    _versions(root, n=1)
    assert cli.main(["promote", *args, "--version", "v9", "--reason", "x"]) == 2
    err = capsys.readouterr().err
    assert "fashion has no version 'v9'" in err and "(registered: v1)" in err
    assert cli.main(["promote", *args, "--version", "v1", "--reason", "x"]) == 0
    capsys.readouterr()
    assert cli.main(["rollback", *args, "--reason", "x"]) == 2
    assert "first production version" in capsys.readouterr().err
    assert cli.main(["models", "--registry", root, "--model", "bad/name"]) == 2
    assert "model name 'bad/name'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the reason is required
        cli.main(["promote", *args, "--version", "v1"])


def test_models_escapes_control_characters_of_recorded_text(tmp_path, capsys):
    root = str(tmp_path / "r")
    reg = registry.open_registry(root, "fashion")
    reg.register("/m", {}, {}, "line one\n\x1b[31mred\x1b[0m")
    assert cli.main(["models", "--registry", root, "--model", "fashion"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and '"line one\\n\\u001b[31mred\\u001b[0m"' in out
