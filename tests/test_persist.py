"""Saved results (``mibpcert.persist`` through ``TrainResult.save``/``load``): a loaded result
certifies exactly like the one saved, for the box and for the affine forms; files that are not
saved results, or come from a newer format, are refused with a clear error."""
from __future__ import annotations

import pytest
import torch

from mibpcert import TrainConfig, TrainResult, certified_train, certify, mlp, persist
from mibpcert.threats import Both, LabelFlip, LinfFeatures

F64 = torch.float64


def _data(n: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g, dtype=F64)
    return X, (X[:, 0] - X[:, 1] > 0).to(F64)


@pytest.mark.parametrize("method", ["interval", "affine"])
def test_a_loaded_result_certifies_like_the_saved_one(tmp_path, method):
    X, y = _data()
    Xt, yt = _data(30, seed=1)
    res = certified_train(mlp([2, 5, 1], seed=2), X, y, Both(LinfFeatures(0.02), LabelFlip(1)),
                          TrainConfig(method=method, loss="hinge", epochs=2, batch_size=8))
    res.save(tmp_path / "r.pt")
    back = TrainResult.load(tmp_path / "r.pt")
    assert (back.relational is None) == (method == "interval")
    for n, (lo, hi) in res.param_bounds.items():
        assert torch.equal(back.param_bounds[n][0], lo) and torch.equal(back.param_bounds[n][1], hi)
    assert torch.equal(back.nominal(Xt), res.nominal(Xt))
    assert back.config == res.config and back.threat.describe() == res.threat.describe() and len(back.log) == len(res.log)
    a, b = certify(res, Xt, yt, test_eps=0.01), certify(back, Xt, yt, test_eps=0.01)
    assert torch.equal(a.certified, b.certified)
    assert torch.equal(a.logits.lo, b.logits.lo) and torch.equal(a.logits.hi, b.logits.hi)


def test_other_files_are_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="is not a saved mibpcert.TrainResult"):
        TrainResult.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a saved mibpcert.TrainResult"):
        TrainResult.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no saved mibpcert.TrainResult"):
        TrainResult.load(tmp_path / "missing.pt")
    persist.write(tmp_path / "new.pt", "mibpcert.TrainResult", {})
    doc = torch.load(tmp_path / "new.pt", weights_only=False)
    doc["format_version"] = persist.FORMAT_VERSION + 1
    torch.save(doc, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="written by a newer mibpcert"):
        TrainResult.load(tmp_path / "new.pt")
