"""The architecture's rules hold: import-linter's contracts in pyproject.toml.

They say what a reader of the layout expects and what issue 19 asked for: only `store/` talks to
the database, the domain is pure, each external system's package (`metakocka/`, `crm/`) knows
nothing of the run, production code never imports the sandbox, and no module imports itself back
through a cycle. A broken contract prints the offending import chain in this test's output.
"""

import ast
from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_import_contracts_are_kept(capsys):
    status = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert status == 0, report
    assert "0 broken" in report


def test_only_dagster_private_imports_dagster_internals():
    """Dagster's private modules (`dagster._*`) are named in one module, `dagster_private.py`,
    which says why each is needed; a Dagster upgrade that moves one then breaks one import."""
    package = PYPROJECT.parent / "sync_pipeline"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "dagster_private.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{path.relative_to(package.parent)}:{node.lineno} imports {name}"
                for name in names
                if name.startswith("dagster._")
            ]
    assert not offenders, "\n".join(offenders)
