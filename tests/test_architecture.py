"""What may import what: the import contracts in pyproject.toml ([tool.importlinter]), as `make lint` runs them.

A stage imports components.common, never another stage; components.common imports no stage;
components.pipelines sits on top and may import everything. The contracts are checked on the tree,
and on a copy of it with one forbidden import added, to show each one catches what it forbids.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the `components` package under root, with root's pyproject.toml."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_import_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and " kept" in result.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory):
    """The package and the contracts, copied (without caches), to add a forbidden import to."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "components", root / "components", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    "module,source,broken",
    [
        ("components/drift/leak.py", "from components.train import config\n", "Stages are independent"),
        ("components/embed/leak.py", "import components.train.train\n", "Stages are independent"),
        ("components/common/leak.py", "import components.drift.config\n", "Layers: pipelines"),
        ("components/data/leak.py", "from components.pipelines import settings\n", "Layers: pipelines"),
        # A new sub-package must be placed in the contracts (exhaustive layers).
        ("components/deploy/__init__.py", "", "Layers: pipelines"),
    ],
)
def test_each_contract_catches_what_it_forbids(tree_copy, module, source, broken):
    path = tree_copy / module
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    try:
        result = lint_imports(tree_copy)
    finally:
        path.unlink()
        if not any(path.parent.iterdir()):
            path.parent.rmdir()
    assert result.returncode != 0, result.stdout
    assert "Contracts: 1 kept, 1 broken." in result.stdout, result.stdout
    assert broken in result.stdout.split("Broken contracts", 1)[1], result.stdout
