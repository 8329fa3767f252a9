"""The architecture's rules hold: import-linter's contracts in pyproject.toml.

They say what a reader of the layout expects and what issue 19 asked for: only `store/` talks to
the database, the domain is pure, each external system's package (`metakocka/`, `crm/`) knows
nothing of the run, production code never imports the sandbox, and no module imports itself back
through a cycle. A broken contract prints the offending import chain in this test's output.
"""

from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_import_contracts_are_kept(capsys):
    status = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert status == 0, report
    assert "0 broken" in report
