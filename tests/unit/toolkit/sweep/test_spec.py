"""The sweep's spec: TOML and flags, the 70% floor, grid expansion, stable ids."""

from __future__ import annotations

import pytest
from edgeopt.toolkit.sweep.spec import Search, board_resource, resolve, setting_id

from edgeopt.errors import InputError, UsageError


def test_toml_and_flags_merge_flags_win(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(
        '[sweep]\nepochs = 3\nsearch = "optuna"\n[space]\nsparsity = [0.7, 0.8]\ncalibrator = ["minmax", "entropy"]\n'
    )
    spec = resolve({"epochs": 5}, {"sparsity": [0.9]}, p)
    assert spec.epochs == 5 and spec.search is Search.optuna
    assert spec.space.sparsity == [0.9] and [c.value for c in spec.space.calibrator] == ["minmax", "entropy"]
    assert len(spec.grid()) == 2


def test_grid_is_the_product_and_ids_are_stable():
    spec = resolve({}, {"sparsity": [0.7, 0.8, 0.8], "method": ["magnitude", "structured"], "bits": [8, 16]})
    grid = spec.grid()
    assert len(grid) == 2 * 2 * 2  # the repeated 0.8 counts once
    assert len({setting_id(s) for s in grid}) == len(grid)
    assert setting_id(dict(reversed(list(grid[0].items())))) == setting_id(grid[0])


def test_the_70_percent_floor_holds():
    with pytest.raises(UsageError, match="below 0.7"):
        resolve({}, {"sparsity": [0.5, 0.8]})


@pytest.mark.parametrize(
    "space, match",
    [
        ({"bits": [3]}, "--bits must be one of"),
        ({"calibrator": ["nope"]}, "bad sweep value for space.calibrator"),
        ({"target": ["vax"]}, "unknown target"),
    ],
)
def test_bad_space_values_are_usage_errors(space, match):
    with pytest.raises(UsageError, match=match):
        resolve({}, space)


def test_bad_spec_file(tmp_path):
    with pytest.raises(InputError, match="sweep spec not found"):
        resolve({}, {}, tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[space\n")
    with pytest.raises(InputError, match="is not valid TOML"):
        resolve({}, {}, tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text("[sweep]\nepoch = 3\n")
    with pytest.raises(UsageError, match="bad sweep value for epoch"):
        resolve({}, {}, tmp_path / "typo.toml")


def test_board_resource_names():
    assert board_resource("local") == "edgeopt_board_local"
    assert board_resource("pi@10.0.0.5:2222") == "edgeopt_board_pi_10_0_0_5_2222"
