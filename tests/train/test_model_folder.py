"""The model folder contract (``components.common.model_folder``) on small hand-made folders."""

from __future__ import annotations

import hashlib
import json

import pytest

from components.common.files import TRAINING_SUMMARY_FILE
from components.common.model_folder import check_model_folder, load_summary, weights_version, write_summary


def test_weights_version_is_the_sha256_prefix_of_the_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "config.json").write_text("{}")  # not part of the version
    assert weights_version(tmp_path) == hashlib.sha256(b"weights").hexdigest()[:16]
    # several files: hashed in name order, as one stream
    (tmp_path / "a.safetensors").write_bytes(b"first ")
    assert weights_version(tmp_path) == hashlib.sha256(b"first weights").hexdigest()[:16]


def test_weights_version_without_weights(tmp_path):
    with pytest.raises(ValueError, match=r"no weights file \(\*\.safetensors / \*\.bin\) to version"):
        weights_version(tmp_path)


def test_summary_round_trip_and_errors(tmp_path):
    with pytest.raises(ValueError, match=f"no {TRAINING_SUMMARY_FILE}; expected a model folder"):
        load_summary(tmp_path)
    write_summary(tmp_path, {"model_version": "abc", "metrics": {"accuracy": 0.5}})
    assert json.loads((tmp_path / TRAINING_SUMMARY_FILE).read_text())["model_version"] == "abc"
    assert load_summary(tmp_path) == {"model_version": "abc", "metrics": {"accuracy": 0.5}}
    write_summary(tmp_path, {"metrics": {}})
    with pytest.raises(ValueError, match="no 'model_version' key"):
        load_summary(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAINING_SUMMARY_FILE]  # no temporary file


def test_check_model_folder_names_everything_missing(tmp_path):
    with pytest.raises(ValueError, match="does not exist or is not a folder"):
        check_model_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError) as e:
        check_model_folder(tmp_path)
    assert str(e.value) == (
        f"model folder {tmp_path}: missing config.json (model configuration); weights (model.safetensors); "
        f"preprocessor_config.json (image processor); {TRAINING_SUMMARY_FILE} (model_version); "
        "expected the train stage's output (save_pretrained model + image processor + training summary)"
    )
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", TRAINING_SUMMARY_FILE):
        (tmp_path / name).write_text("{}")
    check_model_folder(tmp_path)


def _folder(tmp_path, id2label, summary_extra=None, weights=b"weights"):
    import hashlib as _h

    from components.common import schema as _s

    (tmp_path / "config.json").write_text(
        json.dumps({"id2label": {str(i): n for i, n in enumerate(id2label)}})
    )
    (tmp_path / "model.safetensors").write_bytes(weights)
    (tmp_path / "preprocessor_config.json").write_text("{}")
    summary = {"model_version": _h.sha256(b"weights").hexdigest()[:16], "class_names": list(_s.CLASS_NAMES)}
    write_summary(tmp_path, {**summary, **(summary_extra or {})})
    return tmp_path


def test_verify_model_folder_accepts_this_setups_model(tmp_path):
    from components.common import schema
    from components.common.model_folder import verify_model_folder

    folder = _folder(tmp_path, schema.CLASS_NAMES)
    assert verify_model_folder(folder)["model_version"] == weights_version(folder)


def test_verify_model_folder_refuses_a_summary_with_other_class_names(tmp_path):
    from components.common import schema
    from components.common.model_folder import ModelFolderMismatchError, verify_model_folder

    folder = _folder(tmp_path, schema.CLASS_NAMES, {"class_names": ["a", "b"]})
    with pytest.raises(
        ModelFolderMismatchError, match=r"lists 2 classes \(a, b\) but this setup's class list has 10"
    ):
        verify_model_folder(folder)


def test_verify_model_folder_refuses_unnamed_labels_and_changed_weights(tmp_path):
    from components.common import schema
    from components.common.model_folder import ModelFolderMismatchError, model_labels, verify_model_folder

    folder = _folder(tmp_path, schema.CLASS_NAMES, weights=b"other weights")
    with pytest.raises(ModelFolderMismatchError, match="claims model_version .* hash to "):
        verify_model_folder(folder)
    (folder / "config.json").write_text(json.dumps({"num_labels": 3}))  # no id2label: LABEL_0..2
    assert model_labels(folder) == ["LABEL_0", "LABEL_1", "LABEL_2"]
    with pytest.raises(ModelFolderMismatchError, match=r"the model has 3 classes \(LABEL_0"):
        verify_model_folder(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json cannot be read"):
        verify_model_folder(folder)
