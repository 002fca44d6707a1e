import numpy as np
import pytest
from edgeopt.toolkit.data import load_dataset, load_npz

from edgeopt.errors import InputError


def test_digits_split_shape_and_range(digits):
    assert digits.x_test.shape == (360, 1, 28, 28)  # fixed seeded 80/20 split of 1,797 images
    # 15% of the training part held out as validation: never trained on, used for decisions
    assert digits.x_train.shape == (1221, 1, 28, 28) and digits.x_val.shape == (216, 1, 28, 28)
    assert digits.x_train.dtype == np.float32
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    assert digits.num_classes == 10
    # stratified: every class in the test split
    assert set(np.unique(digits.y_test)) == set(range(10))


def test_digits_split_is_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert np.array_equal(a.y_test, b.y_test)
    assert np.array_equal(a.x_test, b.x_test)


def test_calibration_is_seeded_subset(digits):
    c1, c2 = digits.calibration(64, seed=1), digits.calibration(64, seed=1)
    assert c1.shape == (64, 1, 28, 28)
    assert np.array_equal(c1, c2)
    assert not np.array_equal(c1, digits.calibration(64, seed=2))


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 8, 8), dtype=np.float32)
    y = rng.integers(0, 3, 50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_npz(tmp_path / "d.npz")
    assert ds.x_train.shape[1:] == (8, 8)  # samples as given: never reshaped by guess
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 50
    assert "held out" in ds.splits["test"]


def test_given_splits_are_used_as_they_are(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {k: rng.random((n, 40, 98), dtype=np.float32) for k, n in (("x", 30), ("x_val", 7), ("x_test", 9))}
    labels = {f"y{k[1:]}": rng.integers(0, 4, len(v)) for k, v in arrays.items()}
    np.savez(tmp_path / "d.npz", **arrays, **labels)
    ds = load_npz(tmp_path / "d.npz")
    assert np.array_equal(ds.x_test, arrays["x_test"]) and np.array_equal(ds.y_val, labels["y_val"])
    assert len(ds.x_train) == 30 and ds.x_train.shape[1:] == (40, 98)
    assert "x_test/y_test" in ds.splits["test"]


def test_separate_test_file(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 20), dtype=np.float32), y=rng.integers(0, 2, 40))
    np.savez(tmp_path / "t.npz", x=rng.random((11, 20), dtype=np.float32), y=rng.integers(0, 2, 11))
    ds = load_npz(tmp_path / "d.npz", test=tmp_path / "t.npz")
    assert len(ds.x_test) == 11 and str(tmp_path / "t.npz") in ds.splits["test"]
    assert len(ds.x_train) + len(ds.x_val) == 40


def test_unlabelled_data_is_calibration_only(tmp_path):
    np.savez(tmp_path / "u.npz", x=np.ones((12, 3, 8, 8), dtype=np.float32))
    ds = load_npz(tmp_path / "u.npz")
    assert not ds.labelled and len(ds.x_train) == 12 and ds.splits["test"] is None


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip file", "is not an .npz"),
        (None, "expected 'x'"),
    ],
)
def test_bad_npz_is_a_clear_input_error(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, images=np.zeros((20, 4)))
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_npz(path)


def test_unknown_data_name():
    with pytest.raises(InputError, match="unknown data set"):
        load_dataset("imagenet")
