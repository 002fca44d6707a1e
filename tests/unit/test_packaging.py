"""The installed distribution puts every package of the repository under `edgeopt`."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_under_the_edgeopt_namespace():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = conf["package-dir"]
    listed = set(conf["packages"])
    found = set()
    for top, folder in (
        ("edgeopt.toolkit", "toolkit"),
        ("edgeopt.compile", "compile"),
        ("edgeopt.board", "board"),
        ("edgeopt", "edgeopt"),
    ):
        assert dirs[top] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((top, *rel)))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "pyproject.toml lists packages that have no folder"


def test_the_packages_import_under_edgeopt_only():
    import edgeopt.board.agent
    import edgeopt.compile
    import edgeopt.toolkit

    assert Path(edgeopt.toolkit.__file__).parent == ROOT / "toolkit"
    assert Path(edgeopt.board.agent.__file__).parent == ROOT / "board" / "agent"
    assert edgeopt.compile.__name__ == "edgeopt.compile"
