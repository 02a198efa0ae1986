"""Tests for mibpcert.data (bundled data sets and the IDX reader)."""

import gzip
import struct

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_moons

from mibpcert import data
from mibpcert.data import (
    Dataset,
    breast_cancer,
    diabetes,
    digits_1v7,
    load,
    mnist_binary,
    read_idx,
    two_moons,
)

F64 = torch.float64


def _all_tensors(ds: Dataset):
    out = [ds.X_train, ds.y_train, ds.X_test, ds.y_test]
    if ds.X_val is not None:
        out += [ds.X_val, ds.y_val]
    return out


def _write_idx(path, arr, code, fmt_char, compress=False):
    """Write an IDX file independently of the reader (struct, big-endian)."""
    arr = np.asarray(arr)
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    flat = arr.reshape(-1).tolist()
    body = struct.pack(f">{len(flat)}{fmt_char}", *flat)
    blob = header + body
    if compress:
        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return path


# ----------------------------------------------------------------------------
# two moons
# ----------------------------------------------------------------------------


def test_two_moons_shapes_dtypes_labels():
    ds = two_moons(n_train=50, n_test=20, n_val=10, seed=3)
    assert ds.X_train.shape == (50, 2) and ds.y_train.shape == (50,)
    assert ds.X_val.shape == (10, 2) and ds.y_val.shape == (10,)
    assert ds.X_test.shape == (20, 2) and ds.y_test.shape == (20,)
    assert all(t.dtype == F64 for t in _all_tensors(ds))
    assert set(torch.cat([ds.y_train, ds.y_val, ds.y_test]).tolist()) == {0.0, 1.0}
    assert ds.task == "binary" and ds.num_classes == 2 and ds.num_features == 2
    assert ds.name == "two_moons"


def test_two_moons_no_val_is_none():
    ds = two_moons(n_train=30, n_test=10)
    assert ds.X_val is None and ds.y_val is None


def test_two_moons_matches_make_moons():
    X, y = make_moons(n_samples=40 + 7 + 13, noise=0.2, random_state=11)
    ds = two_moons(n_train=40, n_val=7, n_test=13, noise=0.2, seed=11)
    np.testing.assert_array_equal(ds.X_train.numpy(), X[:40])
    np.testing.assert_array_equal(ds.y_train.numpy(), y[:40])
    np.testing.assert_array_equal(ds.X_val.numpy(), X[40:47])
    np.testing.assert_array_equal(ds.y_val.numpy(), y[40:47])
    np.testing.assert_array_equal(ds.X_test.numpy(), X[47:])
    np.testing.assert_array_equal(ds.y_test.numpy(), y[47:])


def test_two_moons_determinism():
    a = two_moons(n_train=40, n_test=10, seed=5)
    b = two_moons(n_train=40, n_test=10, seed=5)
    c = two_moons(n_train=40, n_test=10, seed=6)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.X_train, c.X_train)


def test_two_moons_standardize_uses_train_stats():
    raw = two_moons(n_train=200, n_test=50, n_val=30, seed=1)
    ds = two_moons(n_train=200, n_test=50, n_val=30, seed=1, standardize=True)
    Xtr = ds.X_train
    assert torch.allclose(Xtr.mean(0), torch.zeros(2, dtype=F64), atol=1e-10)
    assert torch.allclose(Xtr.std(0, unbiased=False), torch.ones(2, dtype=F64), atol=1e-10)
    mean = raw.X_train.mean(0)
    std = raw.X_train.std(0, unbiased=False)
    assert torch.allclose(ds.X_test, (raw.X_test - mean) / std)
    assert torch.allclose(ds.X_val, (raw.X_val - mean) / std)
    # test data was not used for the statistics
    assert not torch.allclose(ds.X_test.mean(0), torch.zeros(2, dtype=F64), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_train": -1},
        {"n_test": -5},
        {"n_val": -1},
        {"noise": -0.1},
        {"noise": float("nan")},
    ],
)
def test_two_moons_bad_args(kwargs):
    with pytest.raises(ValueError):
        two_moons(**kwargs)


# ----------------------------------------------------------------------------
# digits 1 vs 7
# ----------------------------------------------------------------------------


def test_digits_1v7():
    ds = digits_1v7(n_val=20, seed=0)
    d = load_digits()
    n_total = int(((d.target == 1) | (d.target == 7)).sum())
    n = len(ds.y_train) + len(ds.y_val) + len(ds.y_test)
    assert n == n_total
    assert ds.num_features == 64 and len(ds.feature_names) == 64
    assert all(t.dtype == F64 for t in _all_tensors(ds))
    X = torch.cat([ds.X_train, ds.X_val, ds.X_test])
    assert X.min() >= 0.0 and X.max() <= 1.0 and X.max() == 1.0
    y = torch.cat([ds.y_train, ds.y_val, ds.y_test])
    assert set(y.tolist()) == {0.0, 1.0}
    # label 1.0 <-> digit 7, matching rows of the raw data
    n7 = int((d.target == 7).sum())
    assert int(y.sum()) == n7
    # stratified: test class balance close to the overall balance
    frac = n7 / n_total
    assert abs(ds.y_test.mean().item() - frac) < 0.03
    assert abs(len(ds.y_test) - 0.2 * n_total) <= 1


def test_digits_label_mapping_against_raw():
    ds = digits_1v7(seed=0)
    d = load_digits()
    raw7 = d.data[d.target == 7] / 16.0
    raw1 = d.data[d.target == 1] / 16.0
    x = ds.X_train[ds.y_train == 1.0][0].numpy()
    assert np.any(np.all(raw7 == x, axis=1))
    x = ds.X_train[ds.y_train == 0.0][0].numpy()
    assert np.any(np.all(raw1 == x, axis=1))


def test_digits_determinism():
    a, b, c = digits_1v7(seed=1), digits_1v7(seed=1), digits_1v7(seed=2)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.X_train, c.X_train)


@pytest.mark.parametrize("tf", [0.0, 1.0, -0.2, 1.5])
def test_bad_test_fraction(tf):
    for fn in (digits_1v7, breast_cancer, diabetes):
        with pytest.raises(ValueError, match="test_fraction"):
            fn(test_fraction=tf)


def test_negative_n_val():
    for fn in (digits_1v7, breast_cancer, diabetes):
        with pytest.raises(ValueError, match="n_val"):
            fn(n_val=-1)


# ----------------------------------------------------------------------------
# breast cancer / diabetes
# ----------------------------------------------------------------------------


def test_breast_cancer():
    ds = breast_cancer(n_val=50, seed=0)
    assert ds.num_features == 30 and ds.task == "binary" and ds.num_classes == 2
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 569
    assert all(t.dtype == F64 for t in _all_tensors(ds))
    assert ds.y_train.ndim == 1
    assert set(ds.y_train.tolist()) == {0.0, 1.0}
    assert torch.allclose(ds.X_train.mean(0), torch.zeros(30, dtype=F64), atol=1e-10)
    assert torch.allclose(ds.X_train.std(0, unbiased=False), torch.ones(30, dtype=F64), atol=1e-10)
    assert len(ds.feature_names) == 30
    raw = breast_cancer(seed=0, standardize=False)
    assert raw.X_train.mean(0).abs().max() > 1.0


def test_diabetes_regression_targets():
    ds = diabetes(n_val=30, seed=0)
    assert ds.task == "regression" and ds.num_classes is None
    assert ds.num_features == 10
    assert ds.y_train.shape == (len(ds.X_train), 1)
    assert ds.y_test.shape == (len(ds.X_test), 1)
    assert ds.y_val.shape == (30, 1)
    assert all(t.dtype == F64 for t in _all_tensors(ds))
    assert abs(ds.y_train.mean().item()) < 1e-10
    assert abs(ds.y_train.std(unbiased=False).item() - 1.0) < 1e-10
    assert torch.allclose(ds.X_train.mean(0), torch.zeros(10, dtype=F64), atol=1e-10)
    # test targets transformed with train stats, not their own
    raw = diabetes(n_val=30, seed=0, standardize=False)
    m, s = raw.y_train.mean(), raw.y_train.std(unbiased=False)
    assert torch.allclose(ds.y_test, (raw.y_test - m) / s)
    assert raw.y_train.mean().item() > 50  # raw targets are not standardized


# ----------------------------------------------------------------------------
# IDX reader
# ----------------------------------------------------------------------------


def test_read_idx_ubyte_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    labels = np.array([0, 9, 3, 1, 7], dtype=np.uint8)
    pi = _write_idx(tmp_path / "imgs.idx", imgs, 0x08, "B")
    pl = _write_idx(tmp_path / "labels.idx", labels, 0x08, "B")
    ti, tl = read_idx(pi), read_idx(pl)
    assert ti.dtype == F64 and ti.shape == (5, 3, 4)
    assert tl.dtype == F64 and tl.shape == (5,)
    np.testing.assert_array_equal(ti.numpy(), imgs.astype(np.float64))
    np.testing.assert_array_equal(tl.numpy(), labels.astype(np.float64))


def test_read_idx_float64_and_signed(tmp_path):
    arr = np.array([[1.5, -2.25, 3e10], [0.0, -1e-3, 7.0]])
    t = read_idx(_write_idx(tmp_path / "d.idx", arr, 0x0E, "d"))
    assert t.dtype == F64 and t.shape == (2, 3)
    np.testing.assert_array_equal(t.numpy(), arr)
    ints = np.array([-70000, 5, 123456], dtype=np.int32)
    t = read_idx(_write_idx(tmp_path / "i.idx", ints, 0x0C, "i"))
    np.testing.assert_array_equal(t.numpy(), ints)
    shorts = np.array([[-3, 300]], dtype=np.int16)
    t = read_idx(_write_idx(tmp_path / "s.idx", shorts, 0x0B, "h"))
    np.testing.assert_array_equal(t.numpy(), shorts)


def test_read_idx_gz(tmp_path):
    imgs = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3) * 10
    p = _write_idx(tmp_path / "imgs-idx3-ubyte.gz", imgs, 0x08, "B", compress=True)
    assert p.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(p).numpy(), imgs)


def test_read_idx_bad_magic(tmp_path):
    p = tmp_path / "bad.idx"
    p.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">i", 1) + b"\x05")
    with pytest.raises(ValueError, match="magic"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">i", 1) + b"\x05")
    with pytest.raises(ValueError, match="magic"):
        read_idx(p)


def test_read_idx_truncated(tmp_path):
    p = tmp_path / "trunc.idx"
    p.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">2i", 3, 3) + bytes(8))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">i", 3))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)
    p.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)


# ----------------------------------------------------------------------------
# mnist_binary
# ----------------------------------------------------------------------------


def _tiny_mnist(tmp_path, n=40, seed=0, prefix="train", compress=False):
    rng = np.random.default_rng(seed)
    labels = np.tile(np.array([1, 7, 3], dtype=np.uint8), n // 3 + 1)[:n]
    imgs = rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)
    ext = ".gz" if compress else ""
    pi = _write_idx(tmp_path / f"{prefix}-images{ext}", imgs, 0x08, "B", compress)
    pl = _write_idx(tmp_path / f"{prefix}-labels{ext}", labels, 0x08, "B", compress)
    return pi, pl, imgs, labels


def test_mnist_binary_split(tmp_path):
    pi, pl, imgs, labels = _tiny_mnist(tmp_path, n=60)
    ds = mnist_binary(pi, pl, classes=(1, 7), seed=0, test_fraction=0.25)
    keep = (labels == 1) | (labels == 7)
    assert len(ds.y_train) + len(ds.y_test) == keep.sum()
    assert len(ds.y_test) == 10
    assert ds.num_features == 16 and ds.task == "binary"
    assert all(t.dtype == F64 for t in _all_tensors(ds))
    assert set(ds.y_train.tolist()) == {0.0, 1.0}
    X = torch.cat([ds.X_train, ds.X_test])
    assert X.min() >= 0 and X.max() <= 1
    # each row + label matches a raw sample (label 1.0 <-> class 7)
    raw = {tuple(im.reshape(-1) / 255.0): float(lab == 7) for im, lab in zip(imgs[keep], labels[keep])}
    for x, yv in zip(ds.X_train, ds.y_train):
        assert raw[tuple(x.tolist())] == yv.item()
    again = mnist_binary(pi, pl, classes=(1, 7), seed=0, test_fraction=0.25)
    assert torch.equal(ds.X_train, again.X_train)


def test_mnist_binary_test_files_limit_and_load(tmp_path):
    pi, pl, imgs, labels = _tiny_mnist(tmp_path, n=30, compress=True)
    ti, tl, timgs, tlabels = _tiny_mnist(tmp_path, n=15, seed=1, prefix="test")
    ds = load(
        "mnist",
        images_path=pi,
        labels_path=pl,
        classes=(7, 3),
        limit=8,
        test_images_path=ti,
        test_labels_path=tl,
    )
    assert ds.X_train.shape == (8, 16) and ds.X_test.shape == (8, 16)
    keep = (labels == 7) | (labels == 3)
    np.testing.assert_array_equal(
        ds.X_train.numpy(), imgs[keep][:8].reshape(8, -1) / 255.0
    )
    np.testing.assert_array_equal(ds.y_train.numpy(), (labels[keep][:8] == 3).astype(float))
    tkeep = (tlabels == 7) | (tlabels == 3)
    np.testing.assert_array_equal(ds.y_test.numpy(), (tlabels[tkeep][:8] == 3).astype(float))


def test_mnist_binary_bad_args(tmp_path):
    pi, pl, _, _ = _tiny_mnist(tmp_path)
    with pytest.raises(ValueError):
        mnist_binary(pi, pl, classes=(1, 1))
    with pytest.raises(ValueError, match="test_fraction"):
        mnist_binary(pi, pl, test_fraction=1.0)
    with pytest.raises(ValueError):
        mnist_binary(pi, pl, limit=-3)
    with pytest.raises(ValueError):
        mnist_binary(pi, pl, test_images_path=pi)


# ----------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------


def test_load_dispatch():
    ds = load("two_moons", n_train=20, n_test=5, seed=2)
    ref = two_moons(n_train=20, n_test=5, seed=2)
    assert torch.equal(ds.X_train, ref.X_train)
    assert load("digits_1v7").name == "digits_1v7"
    assert load("diabetes").task == "regression"
    assert load("breast_cancer").num_features == 30


def test_load_unknown_name():
    with pytest.raises(ValueError, match="two_moons") as ei:
        load("cifar10")
    msg = str(ei.value)
    for name in ("digits_1v7", "breast_cancer", "diabetes", "mnist"):
        assert name in msg


def test_dataset_is_frozen():
    ds = two_moons(n_train=10, n_test=5)
    with pytest.raises(Exception):
        ds.name = "other"
    assert set(data.DATASETS) == {"two_moons", "digits_1v7", "breast_cancer", "diabetes", "mnist", "file"}


# ---------------------------------------------------------------------------------------------
# your own data: CSV and .npz files (mibpcert.data.files)
# ---------------------------------------------------------------------------------------------
def _csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(str(v) for v in r) for r in rows]) + "\n")
    return str(path)


def test_a_csv_file_is_the_data_it_holds(tmp_path):
    """Rows come back as written (features without the label column, float64), split
    deterministically; the task and classes are read from the labels; a test file is used whole."""
    import numpy as np

    from mibpcert.data import table

    g = np.random.default_rng(0)
    X = np.round(g.normal(size=(40, 3)), 6)
    y = (X[:, 0] > 0).astype(int)
    p = _csv(tmp_path / "train.csv", ["a", "label", "b", "c"], [(x[0], l, x[1], x[2]) for x, l in zip(X, y)])
    ds = table(p, test_fraction=0.25, n_val=5, seed=1)
    assert ds.task == "binary" and ds.num_classes == 2 and ds.feature_names == ("a", "b", "c")
    assert (ds.X_train.shape, ds.X_val.shape, ds.X_test.shape) == ((25, 3), (5, 3), (10, 3))
    got = {tuple(r) for r in torch.cat([ds.X_train, ds.X_val, ds.X_test]).tolist()}
    assert got == {tuple(r) for r in X.tolist()}
    again = table(p, test_fraction=0.25, n_val=5, seed=1)
    assert torch.equal(again.X_train, ds.X_train)
    t = _csv(tmp_path / "test.csv", ["a", "label", "b", "c"], [(1.0, 1, 2.0, 3.0), (-1.0, 0, 0.5, 0.25)])
    ds2 = table(p, test_path=t)
    assert ds2.X_test.tolist() == [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]] and ds2.y_test.tolist() == [1.0, 0.0]
    assert ds2.X_train.shape[0] == 40
    m = _csv(tmp_path / "m.csv", ["x", "label"], [(i, i % 3) for i in range(12)])
    assert (table(m).task, table(m).num_classes) == ("multiclass", 3)
    r = _csv(tmp_path / "r.csv", ["x", "label"], [(i, 0.5 * i) for i in range(12)])
    assert table(r).task == "regression" and table(r).y_train.shape[1] == 1
    ints = _csv(tmp_path / "ints.csv", ["x", "label"], [(i, 25 + 7 * i) for i in range(12)])  # integer targets
    assert table(ints, task="regression").task == "regression"
    bom = tmp_path / "bom.csv"
    bom.write_text("label,x\n0,1.5\n1,2.5\n0,3.5\n1,4.5\n", encoding="utf-8-sig")
    assert table(str(bom), test_fraction=0.5).task == "binary"
    np.savez(tmp_path / "d.npz", X=X, y=y)
    dz = table(str(tmp_path / "d.npz"), test_fraction=0.25, n_val=5, seed=1)
    assert torch.equal(dz.X_train, ds.X_train) and torch.equal(dz.y_test, ds.y_test)


@pytest.mark.parametrize("case,match", [
    ("text", r"column 'b', row 3: 'red' is not a number"),
    ("nan", r"column 'a', row 2: missing value"),
    ("no_label", r"no label column 'label'; the columns are \['a', 'b', 'y'\]"),
    ("binary_2", r"binary labels must be 0 or 1, found \[0.0, 2.0\]"),
    ("ragged", r"row 3 has 2 fields, the header has 3"),
    ("ext", r"unsupported data file type '.xlsx'"),
    ("missing", r"data file not found"),
    ("npz", r"needs arrays 'X' \(N, d\) and 'y' \(N,\), has \['features'\]"),
    ("pm_one", r"cannot tell the task from integer labels \[-1.0, 1.0\]"),
    ("one_based", r"cannot tell the task from integer labels \[1.0, 2.0, 3.0\]"),
    ("test_class", r"labels up to 3, but the training data has 3 classes"),
])
def test_bad_data_files_get_one_clear_error(tmp_path, case, match):
    import numpy as np

    from mibpcert.data import table

    kw = {}
    if case == "text":
        p = _csv(tmp_path / "d.csv", ["a", "b", "label"], [(1, 2, 0), (3, "red", 1)])
    elif case == "nan":
        p = _csv(tmp_path / "d.csv", ["a", "b", "label"], [("", 2, 0), (3, 4, 1)])
    elif case == "no_label":
        p = _csv(tmp_path / "d.csv", ["a", "b", "y"], [(1, 2, 0)])
    elif case == "binary_2":
        p, kw = _csv(tmp_path / "d.csv", ["a", "label"], [(1, 0), (2, 2)]), dict(task="binary")
    elif case == "ragged":
        p = tmp_path / "d.csv"
        p.write_text("a,b,label\n1,2,0\n3,4\n")
    elif case == "ext":
        p = tmp_path / "d.xlsx"
        p.write_text("x")
    elif case == "missing":
        p = tmp_path / "none.csv"
    elif case == "pm_one":
        p = _csv(tmp_path / "d.csv", ["a", "label"], [(i, 1 if i % 2 else -1) for i in range(6)])
    elif case == "one_based":
        p = _csv(tmp_path / "d.csv", ["a", "label"], [(i, 1 + i % 3) for i in range(6)])
    elif case == "test_class":
        p = _csv(tmp_path / "d.csv", ["a", "label"], [(i, i % 3) for i in range(6)])
        kw = dict(test_path=_csv(tmp_path / "t.csv", ["a", "label"], [(0, 3), (1, 0)]))
    else:
        p = tmp_path / "d.npz"
        np.savez(p, features=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=match):
        table(str(p), **kw)


def test_cli_reads_a_csv_relative_to_its_config(tmp_path, capsys):
    """[data] path (no name) is your own file, relative to the config file; the run equals the
    API run on the same file."""
    import numpy as np

    from mibpcert import TrainConfig, certified_train, certify, mlp
    from mibpcert.cli import main
    from mibpcert.data import table
    from mibpcert.threats import LinfFeatures

    g = np.random.default_rng(3)
    X = np.round(g.normal(size=(60, 2)), 5)
    (tmp_path / "sub").mkdir()
    _csv(tmp_path / "sub" / "mine.csv", ["u", "v", "label"], [(a, b, int(a + b > 0)) for a, b in X])
    cfg = tmp_path / "sub" / "run.toml"
    cfg.write_text('[data]\npath = "mine.csv"\ntest_fraction = 0.25\n[model]\nhidden = [4]\n[threat]\n'
                   'type = "linf_features"\neps = 0.01\n[train]\nepochs = 2\nbatch_size = 15\nloss = "hinge"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0  # cwd is elsewhere
    import json

    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    ds = table(str(tmp_path / "sub" / "mine.csv"), test_fraction=0.25)
    res = certified_train(mlp([2, 4, 1], seed=0), ds.X_train, ds.y_train, LinfFeatures(0.01),
                          TrainConfig(epochs=2, batch_size=15, loss="hinge"))
    assert doc["summary"]["certified_accuracy"] == certify(res, ds.X_test, ds.y_test).certified_accuracy
    assert doc["config"]["data"]["path"] == str(tmp_path / "sub" / "mine.csv")
