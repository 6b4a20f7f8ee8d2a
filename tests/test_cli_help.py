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
