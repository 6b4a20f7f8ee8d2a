"""Every command answers --help, and the README's test command is what CI runs."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fwrd.cli import SUBCOMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "Traceback" not in result.output


def test_console_scripts_point_at_commands():
    text = (ROOT / "pyproject.toml").read_text()
    for script, target in re.findall(r'^(fwrd[\w-]*) = "([\w.:]+)"', text, flags=re.M):
        module, attr = target.split(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr)), script


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_line = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("python3 -m venv"))
    install_and_test = test_line.split("&&", 2)[2].strip()  # after creating and activating the venv
    assert install_and_test.replace("pip install ", "pip install -q ") in (ROOT / ".ci" / "run").read_text()


def test_unknown_command_is_one_line():
    result = CliRunner().invoke(main, ["nonsense"])
    assert result.exit_code != 0 and "No such command" in result.output


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_has_no_format_escapes(name):
    """click prints help text as written: a `%%` (argparse's escape) would show literally."""
    result = CliRunner().invoke(main, [name, "--help"])
    assert "%%" not in result.output


def test_package_find_takes_fwrd_only(tmp_path):
    """`include = ["fwrd*"]` also took the demo's fwrd-demo/ output folder (a namespace package)."""
    import tomllib

    import setuptools

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for folder in ("fwrd/sub", "fwrd-demo/run", "fwrd_extra", "fwrd.egg-info"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "fwrd" / "__init__.py").touch()
    (tmp_path / "fwrd" / "sub" / "__init__.py").touch()
    (tmp_path / "fwrd-demo" / "run" / "overlay.png").touch()
    (tmp_path / "fwrd_extra" / "a.py").touch()
    found = setuptools.find_namespace_packages(str(tmp_path), include=find["include"])
    assert sorted(found) == ["fwrd", "fwrd.sub"]
