"""One Dockerfile, six stage images: what `make images` builds for each stage, checked without Docker.

`make -n images` gives the exact `docker build` command of each stage; a small resolver applies its
build arguments to images/Dockerfile (stages, ARG, ENV, RUN) to see what that image gets: its base,
its environment, what it installs, its user. The root .dockerignore is applied to the working tree
to see what the build context sends.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from components.common.images import STAGES, ImageSet

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REGISTRY, TAG = "registry.test:5000/team", "t1"


# ---- what `make images` runs ---------------------------------------------------------------------
@dataclass
class Build:
    dockerfile: str
    context: str
    tags: list[str]
    args: dict[str, str]


def _parse_build(command: str) -> Build:
    words = shlex.split(command)
    assert words[:2] == ["docker", "build"], command
    dockerfile, tags, args, rest = "Dockerfile", [], {}, []
    it = iter(words[2:])
    for word in it:
        if word in ("-f", "--file"):
            dockerfile = next(it)
        elif word in ("-t", "--tag"):
            tags.append(next(it))
        elif word == "--build-arg":
            name, _, value = next(it).partition("=")
            args[name] = value
        else:
            rest.append(word)
    assert len(rest) == 1, f"expected one context argument: {command}"
    return Build(dockerfile, rest[0], tags, args)


@cache
def make_builds(*overrides: str) -> dict[str, Build]:
    """The stage of each `docker build` that `make images` would run, keyed by its STAGE."""
    if shutil.which("make") is None:
        pytest.fail("make is needed (the README's commands all go through it)")
    result = subprocess.run(
        ["make", "-s", "-n", "images", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    builds = [_parse_build(line) for line in result.stdout.splitlines() if line.strip()]
    by_stage = {b.args.get("STAGE", ""): b for b in builds}
    assert len(by_stage) == len(builds), "two builds for one stage"
    return by_stage


def build_of(stage: str) -> Build:
    return make_builds(f"REGISTRY={REGISTRY}", f"KIND_TAG={TAG}")[stage]


# ---- what a Dockerfile gives one build -------------------------------------------------------------
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


def _arg(spec: str) -> tuple[str, str]:
    name, _, default = spec.partition("=")
    return name.strip(), default.strip().strip('"')


def _subst(text: str, scope: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: scope.get(m.group(1) or m.group(2), m.group(0)), text)


@dataclass
class Image:
    """What one build of the Dockerfile produces, read statically."""

    base: str  # the external image the build starts from
    chain: list[str]  # the Dockerfile stages it goes through, base first
    env: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)  # RUN commands, build arguments substituted
    copies: list[str] = field(default_factory=list)
    user: str = "root"


def declared_args(text: str) -> set[str]:
    return {_arg(args)[0] for word, args in _instructions(text) if word == "ARG"}


def resolve(text: str, build_args: dict[str, str]) -> Image:
    """The image the Dockerfile's last stage produces with these build arguments."""
    global_args: dict[str, str] = {}
    stages: list[tuple[str, str, list[tuple[str, str]]]] = []  # (name, FROM reference, instructions)
    for word, args in _instructions(text):
        if word == "FROM":
            ref, _, name = re.sub(r"\s+as\s+", " AS ", args, flags=re.IGNORECASE).partition(" AS ")
            stages.append((name.strip().lower(), ref.strip(), []))
        elif not stages:
            assert word == "ARG", f"{word} before the first FROM"
            name, default = _arg(args)
            global_args[name] = build_args.get(name, default)
        else:
            stages[-1][2].append((word, args))

    def chain(index: int) -> tuple[str, list[str], list[tuple[str, str]]]:
        name, ref, body = stages[index]
        ref = _subst(ref, global_args)
        earlier = {s[0]: i for i, s in enumerate(stages[:index])}
        if ref.lower() in earlier:
            base, names, parent = chain(earlier[ref.lower()])
            return base, [*names, name], parent + body
        return ref, [name], body

    base, names, body = chain(len(stages) - 1)
    image = Image(base=base, chain=names)
    scope: dict[str, str] = {}
    for word, args in body:
        if word == "ARG":
            name, default = _arg(args)
            scope[name] = build_args.get(name, default)
        elif word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                image.env[key] = _subst(value, {**scope, **image.env})
        elif word == "RUN":
            image.runs.append(_subst(args, {**scope, **image.env}))
        elif word == "COPY":
            image.copies.append(args)
        elif word == "USER":
            image.user = _subst(args, scope)
    return image


def image_of(stage: str) -> Image:
    return resolve(DOCKERFILE.read_text(), build_of(stage).args)


def _extra(stage: str) -> set[str]:
    return {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"][stage]
    }


# ---- the Dockerfile itself -------------------------------------------------------------------------
def test_hadolint_passes():
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_resolver_reads_a_multi_stage_dockerfile():
    text = (
        "ARG BASE=one\nFROM debian:12.1 AS one\nENV A=1\nFROM one AS two\nENV B=2\n"
        'FROM ${BASE}\nARG X=""\nRUN echo "${X}" $A\nUSER 7\n'
    )
    image = resolve(text, {"BASE": "two", "X": "hi"})
    assert (image.base, image.chain, image.env) == ("debian:12.1", ["one", "two", ""], {"A": "1", "B": "2"})
    assert (image.runs, image.user) == (['echo "hi" 1'], "7")
    default = resolve(text, {})
    assert (default.chain, default.env, default.runs) == (["one", ""], {"A": "1"}, ['echo "" 1'])


# ---- what `make images` builds -------------------------------------------------------------------
def test_make_builds_every_stage_from_the_one_dockerfile_under_the_pipelines_image_names():
    builds = make_builds(f"REGISTRY={REGISTRY}", f"KIND_TAG={TAG}")
    assert sorted(builds) == sorted(STAGES)
    for stage, build in builds.items():
        assert (build.dockerfile, build.context) == ("images/Dockerfile", ".")
        assert build.tags == [ImageSet(REGISTRY, TAG).ref(stage)]


def test_the_compiled_pipelines_use_only_images_make_builds_by_default():
    built = {tag for build in make_builds().values() for tag in build.tags}
    used = set()
    for path in (ROOT / "pipelines").glob("*.yaml"):
        used |= set(re.findall(r"^\s*image:\s*(\S+)\s*$", path.read_text(), flags=re.MULTILINE))
    assert used, "no image in the compiled pipelines"
    assert used <= built, f"compiled pipelines name images make does not build: {sorted(used - built)}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_build_argument_is_one_the_dockerfile_declares(stage):
    # docker only warns about an undeclared --build-arg: a misspelt one would be silently ignored.
    build = build_of(stage)
    assert set(build.args) <= declared_args(DOCKERFILE.read_text())
    assert build.args["STAGE"] == stage


@pytest.mark.parametrize("stage", STAGES)
def test_base_is_a_pinned_slim_python_and_the_user_is_not_root(stage):
    image = image_of(stage)
    name, _, tag = image.base.partition(":")
    assert name == "python" and "slim" in tag and re.search(r"\d+\.\d+\.\d+", tag), image.base
    assert image.user.split(":")[0] not in ("", "0", "root"), f"{stage}: runs as root"
    uid = image.user.split(":")[0]
    assert any("useradd" in run and f"--uid {uid}" in run for run in image.runs), f"{stage}: no user {uid}"


@pytest.mark.parametrize("stage", STAGES)
def test_gpu_base_exactly_for_the_stages_whose_extra_installs_torch(stage):
    image = image_of(stage)
    needs_gpu = "torch" in _extra(stage)
    assert build_of(stage).args.get("BASE") == ("gpu" if needs_gpu else "cpu")
    assert (image.env.get("NVIDIA_VISIBLE_DEVICES") == "all") == needs_gpu
    assert ("compute" in image.env.get("NVIDIA_DRIVER_CAPABILITIES", "")) == needs_gpu


@pytest.mark.parametrize("stage", STAGES)
def test_installs_only_its_own_extra_within_the_pins_and_imports_its_component(stage):
    image = image_of(stage)
    installs = [m for run in image.runs for m in re.findall(r"pip install [^&]*", run)]
    assert len(installs) == 1, f"{stage}: expected one pip install, found {installs}"
    assert "-c constraints.txt" in installs[0]
    assert re.findall(r"\.\[([a-z,]+)\]", installs[0]) == [stage]
    assert any(f"import components.{stage}.component" in run for run in image.runs)
    assert (ROOT / "components" / stage / "component.py").is_file()


@pytest.mark.parametrize("stage", STAGES)
def test_extra_apt_packages_are_pinned_and_installed(stage):
    packages = build_of(stage).args.get("APT_PACKAGES", "").split()
    for package in packages:
        assert re.fullmatch(r"[a-z0-9][a-z0-9+.-]+=[0-9][^=\s]*", package), f"{package!r} is not pinned"
    apt_runs = [run for run in image_of(stage).runs if "apt-get install" in run]
    assert len(apt_runs) == 1
    if packages:
        assert f"--no-install-recommends {' '.join(packages)}" in apt_runs[0]
        assert "rm -rf /var/lib/apt/lists/*" in apt_runs[0]


def test_the_data_image_holds_the_data_stages_default_source():
    from components.data.config import DataConfig

    source = DataConfig().source
    packages = dict(p.split("=", 1) for p in build_of("data").args.get("APT_PACKAGES", "").split())
    assert "dataset-fashion-mnist" in packages
    if shutil.which("dpkg-query") is None:
        pytest.skip("not Debian: dpkg-query cannot say what dataset-fashion-mnist provides")
    listed = subprocess.run(  # scripts/setup.sh installs the package on the test machine too
        ["dpkg-query", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert source in listed.stdout.split("\n"), f"dataset-fashion-mnist does not provide {source}"


# ---- the build context -----------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception "!...", pattern) of the root .dockerignore, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern_regex(line.lstrip("!"))))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negated
    return result


def context_files(root: Path) -> set[str]:
    rules = dockerignore_rules()
    out = set()
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        rel = "" if rel == "." else rel + "/"
        # A folder excluded with no exception that could reach inside it is not walked (.git, .venv).
        dirs[:] = [
            d
            for d in dirs
            if not excluded(rel + d, rules)
            or any(neg and regex.pattern.startswith(re.escape(rel + d)) for neg, regex in rules)
        ]
        out |= {rel + f for f in files if not excluded(rel + f, rules)}
    return out


def test_dockerignore_matcher_follows_dockers_rules():
    rules = [(False, _pattern_regex("*")), (True, _pattern_regex("keep/")), (False, _pattern_regex("**/x"))]
    assert excluded("a.txt", rules) and excluded("tests/t.py", rules)
    assert not excluded("keep/a/b.py", rules)
    assert excluded("keep/a/x/c.py", rules) and excluded("keep/x", rules)


def test_the_context_sends_only_what_the_image_installs():
    # BuildKit would prefer images/Dockerfile.dockerignore over the root one.
    assert not list((ROOT / "images").glob("*.dockerignore"))
    shipped = context_files(ROOT)
    copied = {"pyproject.toml", "constraints.txt", "README.md"}
    assert copied <= shipped
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "components").rglob("*.py")}
    package = {p for p in package if "__pycache__" not in p}
    assert package <= shipped, f"not sent: {sorted(package - shipped)[:5]}"
    stray = sorted(p for p in shipped if p not in copied and not p.startswith("components/"))
    assert not stray, f"sent but not installed: {stray[:10]}"
    assert not [p for p in shipped if "__pycache__" in p or p.endswith(".pyc")]
    fixtures = [p for p in shipped if Path(p).name in ("conftest.py", "synthetic.py") or "/tests/" in p]
    assert not fixtures, f"test fixtures would ship in the images: {fixtures}"


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


def test_dev_pulls_every_stage_extra():
    dev = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
    self_ref = [r for r in dev if canonicalize_name(r.name) == "fashion-drift"]
    assert self_ref and set(self_ref[0].extras) == set(STAGES)
