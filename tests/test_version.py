"""The package version (``mibpcert.version``): one value, the one pyproject.toml declares, and the
one the package, the reports and ``mibpcert --version`` show."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import mibpcert
from mibpcert.cli import main
from mibpcert.version import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_version_matches_pyproject_and_package():
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert __version__ == declared
    assert mibpcert.__version__ == __version__


def test_cli_prints_the_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"mibpcert {__version__}"
