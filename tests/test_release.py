"""The release's version, in one place (``strattack.__version__``) and everywhere it shows: the
command line, the package metadata, CITATION.cff and CHANGELOG.md. (.ci/release-check builds
and installs the wheel itself.)"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

import strattack
from strattack.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).parent.parent


def test_the_version_is_semantic():
    assert re.fullmatch(r"\d+\.\d+\.\d+", strattack.__version__)


def test_strattack_version_prints_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"strattack {strattack.__version__}\n"


def test_the_package_metadata_reads_the_version_from_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "strattack.__version__"}
    assert pyproject["project"]["license"] == "MIT"
    assert pyproject["project"]["license-files"] == ["LICENSE"]


def test_citation_and_changelog_name_this_version():
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(strattack.__version__)}$", citation, re.M)
    families = re.findall(r"- family-names: (\S+)", citation)
    assert families == ["Xu", "Liu", "Zhao", "Chen", "Zhang", "Fan", "Erdogmus", "Wang", "Lin"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(strattack.__version__)}\] - \d{{4}}-\d\d-\d\d$",
                     changelog, re.M)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
