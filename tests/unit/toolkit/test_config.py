
import pytest

from edgeopt.toolkit.config import resolve
from edgeopt.errors import InputError, UsageError


def test_defaults():
    cfg = resolve({})
    assert (cfg.model, cfg.data, cfg.target, cfg.board) == ("mlp", "digits", "host", "local")
    assert cfg.sparsity == 0.70 and cfg.local_port == 0


def test_toml_then_flags_win(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[run]\nsparsity = 0.8\nlocal-port = 2222\nepochs = 5\n')
    cfg = resolve({"epochs": 7, "model": None}, f)
    assert cfg.sparsity == 0.8 and cfg.local_port == 2222
    assert cfg.epochs == 7  # the flag wins
    assert cfg.model == "mlp"  # None means "not given"


def test_unknown_key_and_bad_value_are_usage_errors(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("sparsty = 0.8\n")
    with pytest.raises(UsageError, match="sparsty"):
        resolve({}, f)
    with pytest.raises(UsageError, match="sparsity"):
        resolve({"sparsity": 1.5})


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        resolve({}, tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("sparsity = = 1")
    with pytest.raises(InputError, match="not valid TOML"):
        resolve({}, bad)
