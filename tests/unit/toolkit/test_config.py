import pytest
from edgeopt.toolkit.config import resolve

from edgeopt.errors import InputError, UsageError


def test_defaults():
    cfg = resolve({})
    assert (cfg.model, cfg.data, cfg.target, cfg.board) == ("mlp", "digits", "host", "local")
    assert cfg.sparsity == 0.70 and cfg.local_port == 0


def test_toml_then_flags_win(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("[run]\nsparsity = 0.8\nlocal-port = 2222\nepochs = 5\n")
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


def test_fast_preset_sits_under_the_config_file_and_the_flags(tmp_path):
    from edgeopt.toolkit.config import PRESETS
    from edgeopt.toolkit.prune import Method

    plain, fast = resolve({}), resolve({"fast": True})
    assert plain.method is Method.magnitude and not plain.distill and plain.final_epochs == 6
    assert fast.fast and fast.method is Method.structured and fast.distill
    assert fast.final_epochs == PRESETS["fast"]["final_epochs"] > plain.final_epochs
    assert fast.sparsity == 0.70  # the floor is the default's: the preset never lowers it
    f = tmp_path / "run.toml"
    f.write_text("[run]\nfinal-epochs = 8\ndistill = false\n")
    cfg = resolve({"fast": True}, f)
    assert cfg.final_epochs == 8 and not cfg.distill  # the file wins over the preset ...
    assert (
        cfg.method is Method.structured and cfg.prune_epochs == PRESETS["fast"]["prune_epochs"]
    )  # ... where it speaks
    cfg = resolve({"fast": True, "method": "magnitude", "final_epochs": 3}, f)
    assert cfg.method is Method.magnitude and cfg.final_epochs == 3  # flags win over both
    f.write_text("fast = true\n")  # the preset may be chosen in the file too
    assert resolve({}, f).method is Method.structured and resolve({"fast": False}, f).method is Method.magnitude
