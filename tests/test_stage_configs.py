"""Every stage's Config is the one source of its parameters: component, command line, KFP help and
pipeline defaults agree with it. Plus the derivation helpers of ``components.common.config`` on small
hand-made Configs, so that a disagreement is shown to fail."""

import argparse
import dataclasses
import importlib

import pytest

from components.common.config import (
    add_config_arguments,
    component_doc,
    component_fields,
    config_from,
    default_of,
    help_of,
    param,
    signature_mismatches,
)
from components.common.images import STAGES


def _stage(stage: str):
    module = importlib.import_module(f"components.{stage}.component")
    return module, getattr(module, stage)


@pytest.mark.parametrize("stage", STAGES)
def test_component_signature_is_the_config(stage):
    module, body = _stage(stage)
    assert signature_mismatches(body, module.CONFIG, module.ARTIFACTS) == []


@pytest.mark.parametrize("stage", STAGES)
def test_command_line_offers_every_config_field_with_its_default(stage):
    module, _ = _stage(stage)
    parser = importlib.import_module(f"components.{stage}.__main__").parser()
    actions = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(module.CONFIG):
        assert f.name in actions, f"python -m components.{stage} has no option for {f.name}"
        assert actions[f.name].default == default_of(f), f.name
        assert help_of(f) in (actions[f.name].help or ""), f.name


@pytest.mark.parametrize("stage", STAGES)
def test_kfp_component_shows_the_help_of_every_parameter(stage):
    module, _ = _stage(stage)
    spec = module.component().component_spec
    for f in component_fields(module.CONFIG):
        assert spec.inputs[f.name].description == help_of(f), f"{stage}.{f.name}"
    for name in module.ARTIFACTS:
        described = (spec.inputs or {}).get(name) or (spec.outputs or {}).get(name)
        assert described is not None and described.description, f"{stage}: artifact {name} has no help"


def _pipeline_parameter_defaults(which: str) -> dict:
    from components.pipelines import definitions

    func = definitions.BUILDERS[which]()
    return {
        name: spec.default for name, spec in func.component_spec.inputs.items() if spec.default is not None
    }


@pytest.mark.parametrize("which", ["training", "monitoring"])
def test_pipeline_parameters_take_the_stage_names_and_defaults(which):
    """A pipeline parameter named like a stage's Config field has that field's default."""
    defaults = _pipeline_parameter_defaults(which)
    checked = 0
    for stage in STAGES:
        module, _ = _stage(stage)
        for f in component_fields(module.CONFIG):
            if f.name in defaults:
                assert defaults[f.name] == default_of(f), f"{which}: {f.name} ({stage})"
                checked += 1
    assert checked >= 6  # seed, false_alarm_rate, drift_resamples, embed_batch_size, ...


# ---- the derivation helpers themselves -------------------------------------------------------------
@dataclasses.dataclass
class _Config:
    rate: float = param(0.01, "a rate")
    count: int = param(3, "how many")
    on: bool = param(True, "switch")
    threads: int = param(0, "cpu threads", component=False)


def _good(data: str, rate: float = 0.01, count: int = 3, on: bool = True):
    return config_from(_Config, locals())


def _bad(data: str, rate: float = 0.1, count: float = 3.0, extra: int = 1):
    return None


def test_signature_mismatches_names_each_disagreement():
    assert signature_mismatches(_good, _Config, ("data",)) == []
    assert signature_mismatches(_bad, _Config, ("data",)) == [
        "_bad: Config field 'on' is not a component parameter",
        "_bad: parameter 'extra' is not a field of _Config",
        "_bad.count: default 3.0 != Config's 3",
        "_bad.count: type <class 'float'> != Config's <class 'int'>",
        "_bad.rate: default 0.1 != Config's 0.01",
    ]


def test_config_from_takes_only_config_fields():
    assert _good("path", rate=0.5) == _Config(rate=0.5, count=3, on=True, threads=0)


def test_command_line_types_and_switches():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, _Config)
    args = parser.parse_args(["--rate", "0.2", "--count", "7", "--no-on", "--threads", "2"])
    assert config_from(_Config, vars(args)) == _Config(rate=0.2, count=7, on=False, threads=2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--count", "many"])


def test_component_doc_lists_artifacts_then_component_fields_only():
    doc = component_doc("Does it.", _Config, {"data": "the input"})
    assert doc == (
        "Does it.\n\nArgs:\n    data: the input\n    rate: a rate\n    count: how many\n    on: switch\n"
    )


def test_param_needs_help():
    with pytest.raises(ValueError, match="help text"):
        param(1, "")
