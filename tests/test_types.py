"""The package type-checks: mypy with the settings of pyproject.toml ([tool.mypy]: every module of
src/holdsgm, bodies of unannotated functions included) reports no error. The SDE contract, the Task
protocol, the network contract and the engine's optional parts are declared types, so a change that
breaks one of them fails here before it fails at run time."""

from mypy import api

from run_helpers import REPO


def test_mypy_reports_no_error(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)  # mypy reads [tool.mypy] from the working folder's pyproject.toml
    out, err, status = api.run(["--cache-dir", str(tmp_path / "mypy-cache")])
    assert status == 0, out + err
    assert "Success: no issues found" in out
