"""One image per stage: hadolint-clean, pinned base, non-root, and installing what its component imports."""

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from components.common.images import STAGES

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"
GPU_STAGES = ("train", "embed")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dockerfile(stage: str) -> str:
    return (ROOT / "images" / stage / "Dockerfile").read_text()


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_hadolint_passes(stage):
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(ROOT / "images" / stage / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_base_is_pinned_and_user_is_not_root(stage):
    instructions = _instructions(_dockerfile(stage))
    (base,) = [args for word, args in instructions if word == "FROM"]
    image, _, tag = base.partition(":")
    assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{stage}: base {base!r} is not pinned"
    assert image == "python" and "slim" in tag, f"{stage}: expected a slim Python base, got {base!r}"
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), f"{stage}: runs as root"


@pytest.mark.parametrize("stage", STAGES)
def test_installs_only_its_own_extra_within_the_pins(stage):
    runs = " ".join(args for word, args in _instructions(_dockerfile(stage)) if word == "RUN")
    installs = re.findall(r"pip install [^&]*", runs)
    assert len(installs) == 1, f"{stage}: expected one pip install, found {installs}"
    assert "-c constraints.txt" in installs[0]
    assert re.findall(r"\.\[([a-z,]+)\]", installs[0]) == [stage]


@pytest.mark.parametrize("stage", STAGES)
def test_gpu_stages_get_the_cuda_torch_and_the_others_do_not(stage):
    extra = {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"][stage]
    }
    assert ("torch" in extra) == (stage in GPU_STAGES)
    assert ("NVIDIA_VISIBLE_DEVICES" in _dockerfile(stage)) == (stage in GPU_STAGES)


def test_dev_pulls_every_stage_extra():
    dev = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
    self_ref = [r for r in dev if canonicalize_name(r.name) == "fashion-drift"]
    assert self_ref and set(self_ref[0].extras) == set(STAGES)


# ---- every import of a stage is installed in that stage's image --------------------------------
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _stage_imports(stage: str) -> set[str]:
    """Top-level third-party modules imported by the stage package and the common modules it uses."""
    todo = list((ROOT / "components" / stage).glob("*.py"))
    seen: set[Path] = set()
    third_party: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "components":
                parts = name.split(".")
                candidate = ROOT.joinpath(*parts).with_suffix(".py")
                if candidate.is_file():
                    todo.append(candidate)
                elif (ROOT.joinpath(*parts) / "__init__.py").is_file():
                    todo.append(ROOT.joinpath(*parts) / "__init__.py")
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return third_party


def _installed_closure(requirements: list[str]) -> set[str]:
    """Distributions pip installs for these requirements (with their dependencies, extras included)."""
    todo = [Requirement(r) for r in requirements]
    found: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in found:
            continue
        found.add(key)
        found.add(name)
        for sub in metadata.requires(req.name) or []:
            sub_req = Requirement(sub)
            if sub_req.marker is None or any(
                sub_req.marker.evaluate({"extra": e}) for e in [*req.extras, ""]
            ):
                todo.append(sub_req)
    return {n for n in found if "[" not in n}


@pytest.mark.parametrize("stage", STAGES)
def test_each_image_installs_what_its_component_imports(stage):
    if not (ROOT / "components" / stage / "component.py").exists():
        pytest.skip(f"components/{stage}/component.py has not landed yet")
    requirements = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"][stage]
    installed = _installed_closure(requirements)
    module_to_dists = metadata.packages_distributions()
    missing = {}
    for module in sorted(_stage_imports(stage)):
        dists = {canonicalize_name(d) for d in module_to_dists.get(module, [])}
        assert dists, f"{stage}: imports {module!r}, which no installed distribution provides"
        if not dists & installed:
            missing[module] = sorted(dists)
    assert not missing, (
        f"{stage}: the image's extra does not install {missing}; add them to [{stage}] in pyproject"
    )
