"""The registry's helper components: register-model's and resolve-model's bodies, and their components."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import Model

from components.common import helpers, registry, storage
from components.common.model_folder import weights_version

from .conftest import write_model_folder


def _model(uri: str) -> Model:
    return Model(name="model", uri=uri, metadata={})


def test_register_model_records_the_artifact_its_metrics_and_fingerprints(tmp_path):
    folder = write_model_folder(tmp_path / "train" / "model", accuracy=0.84)
    root = str(tmp_path / "registry")
    version = helpers.register_model(
        model=_model(folder),
        registry_uri=root,
        registered_model="fashion",
        promote=False,
        reason="nightly training",
        metrics_json=json.dumps({"gate": "hold", "clean_accuracy": 0.83}),
        run="fashion-drift-training-123",
    )
    assert version == "v1"
    reg = registry.open_registry(root, "fashion")
    (v1,) = reg.versions()
    assert v1.model_uri == folder  # the artifact's URI: nothing copied
    assert v1.stage == registry.CANDIDATE and v1.run == "fashion-drift-training-123"
    assert v1.metrics["training"]["accuracy"] == 0.84
    assert v1.metrics["training"]["loss"] is None  # NaN in the summary: JSON null
    assert v1.metrics["evaluation"] == {"gate": "hold", "clean_accuracy": 0.83}
    assert v1.fingerprints["data_fingerprint"] == "0123456789abcdef"
    assert (
        v1.fingerprints["model_version"]
        == json.loads((tmp_path / "train/model/training_summary.json").read_text())["model_version"]
    )
    assert reg.history()[0].reason == "nightly training"

    second = write_model_folder(tmp_path / "train2" / "model", weights=b"other", accuracy=0.86)
    assert helpers.register_model(_model(second), root, "fashion", True, "gate passed") == "v2"
    assert reg.production().version == "v2"
    assert [e.action for e in reg.history()] == ["register", "register", "promote"]


def test_register_model_refuses_metrics_that_are_not_a_json_object(tmp_path):
    folder = write_model_folder(tmp_path / "m")
    with pytest.raises(ValueError, match="metrics_json: not JSON"):
        helpers.register_model(
            _model(folder), str(tmp_path / "r"), "fashion", False, "x", metrics_json="{oops"
        )
    with pytest.raises(ValueError, match="metrics_json: expected a JSON object, got list"):
        helpers.register_model(_model(folder), str(tmp_path / "r"), "fashion", False, "x", metrics_json="[1]")
    assert registry.open_registry(str(tmp_path / "r"), "fashion").versions() == []


@pytest.mark.parametrize("root", ["local", "s3"], indirect=True)
def test_resolve_model_copies_the_production_folder_or_a_plain_one(root, tmp_path):
    uri, config = root
    local = write_model_folder(tmp_path / "trained" / "model")
    if config is not None:  # the model folder in the bucket too, as a cluster's train artifact is
        stored = storage.join(uri.rsplit("/", 1)[0], "artifacts", "model")
        for f in sorted((tmp_path / "trained" / "model").iterdir()):
            storage.write_bytes(storage.join(stored, f.name), f.read_bytes(), config=config)
    else:
        stored = local
    reg = registry.open_registry(uri, "fashion", config=config)
    reg.register(stored, {}, {}, "trained")
    reg.promote("v1", "first")

    out = _model(str(tmp_path / "run" / "resolve-model" / "model"))
    helpers.resolve_model(model_uri="fashion@production", registry_uri=uri, model=out)
    copied = sorted(p.name for p in (tmp_path / "run" / "resolve-model" / "model").iterdir())
    assert copied == sorted(p.name for p in (tmp_path / "trained" / "model").iterdir())
    assert out.metadata["source_uri"] == stored and out.metadata["model_spec"] == "fashion@production"

    # A plain folder works as before: the registry is not consulted.
    plain = _model(str(tmp_path / "run2" / "model"))
    helpers.resolve_model(model_uri=stored, registry_uri="", model=plain)
    assert plain.metadata["source_uri"] == stored


def test_resolve_model_refuses_an_empty_folder_and_records_the_model_version(tmp_path):
    with pytest.raises(ValueError, match="no files there"):
        helpers.resolve_model(str(tmp_path / "nothing"), "", _model(str(tmp_path / "o1")))
    folder = write_model_folder(tmp_path / "m")
    out = _model(str(tmp_path / "o2"))
    helpers.resolve_model(folder, "", out)
    assert out.metadata["model_version"] == weights_version(folder)


def test_the_helper_components_run_in_the_ingest_image_with_their_inputs():
    for body in (helpers.register_model, helpers.resolve_model):
        assert helpers.HELPER_STAGES[body] == "ingest"
    register = helpers.helper_component(helpers.register_model).component_spec
    assert set(register.inputs) == {
        "model",
        "registry_uri",
        "registered_model",
        "promote",
        "reason",
        "metrics_json",
        "run",
    }
    assert register.inputs["metrics_json"].default == "{}"
    assert register.outputs["Output"].type == "String"
    resolve = helpers.helper_component(helpers.resolve_model).component_spec
    assert set(resolve.inputs) == {"model_uri", "registry_uri"} and resolve.outputs["model"].type.startswith(
        "system.Model"
    )
