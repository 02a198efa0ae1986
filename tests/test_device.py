"""Runs on a device other than the CPU, checked without a GPU.

The runs go through :class:`tests.helpers.fake_device.FakeDevice`, which emulates a CUDA device on
the CPU: it records every operation that mixes device and host tensors (CUDA refuses them), every
read of device values on the host (a stall on a GPU) and every copy of host data to the device.
A test below injects such mistakes and shows that they are caught.
"""
from __future__ import annotations

import pickle
from collections import Counter
from unittest import mock

import pytest
import torch

import mibpcert as mc
import mibpcert.steps.interval as msi
from mibpcert.checkpoint import FILE
from mibpcert.config import TrainConfig
from mibpcert.model import mlp
from mibpcert.steps.affine import SymbolTable
from tests.helpers.fake_device import FAKE, FakeDevice, on_fake

B, N = 20, 40  # batch, samples: 2 steps per epoch


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(N, 3, dtype=torch.float64, generator=g)
    return X, (X[:, 0] > 0.5).double()


def _emulated(fn):
    """``fn()`` with CUDA said to be available and the fake device recording; returns both."""
    dev = FakeDevice()
    with mock.patch("torch.cuda.is_available", lambda: True), mock.patch("torch.cuda.device_count", lambda: 1), dev:
        out = fn()
    return out, dev


def _hot(records: list, steps: int, prefixes=("steps/", "interval/", "losses/", "threats/")) -> dict:
    """Records made by the step code (not by data checks or the loop), per step."""
    c = Counter(where for _, where in records if where.startswith(prefixes) and not where.endswith(" check_labels"))
    return {k: v / steps for k, v in c.items()}


THREATS = {"all": mc.threats.LinfFeatures(0.01), "k": mc.threats.LinfFeatures(0.01, k=2),
           "labels": mc.threats.LabelFlip(k=2)}


@pytest.mark.parametrize("method", ["interval", "affine"])
@pytest.mark.parametrize("threat", list(THREATS))
def test_steps_stay_on_the_device(method, threat):
    """Training and certifying on CUDA (emulated): no tensor of the host meets the device's, the
    box, the nominal model and the certificate live on the device, the interval step reads nothing
    back to the host, the affine step only a few times per step (never per sample), and the bounds
    are those of the CPU run."""
    X, y = _data()
    cfg = dict(epochs=2, batch_size=B, lr=0.1, method=method, affine_symbols=40)

    def run():
        res = mc.certified_train(mlp([3, 6, 1]), X, y, THREATS[threat], TrainConfig(device="cuda", **cfg))
        return res, mc.certify(res, X, y, test_eps=0.01)

    (res, rep), dev = _emulated(run)
    assert dev.mixes == []
    assert all(on_fake(lo) and on_fake(hi) for lo, hi in res.param_bounds.values())
    assert all(on_fake(p) for p in res.nominal.parameters())
    assert on_fake(rep.certified) and on_fake(rep.logits.lo)
    steps = len(res.log)
    syncs = _hot(dev.syncs, steps)
    if method == "interval":
        assert syncs == {}
    else:
        own = sum(v for k, v in syncs.items() if k.startswith("steps/affine.py"))
        assert own <= 8, syncs  # symbol bookkeeping on the host; one read per sample would be >= B
    assert sum(v for k, v in _hot(dev.copies, steps).items() if k.startswith("steps/affine.py")) <= 4
    cpu = mc.certified_train(mlp([3, 6, 1]), X, y, THREATS[threat], TrainConfig(device="cpu", **cfg))
    for n, (lo, hi) in cpu.param_bounds.items():
        assert torch.equal(lo, res.param_bounds[n][0].cpu()) and torch.equal(hi, res.param_bounds[n][1].cpu())


def test_injected_device_mistakes_are_caught(monkeypatch):
    """The checks above can fail: a host tensor created without ``device=`` in the step is a mix,
    a per-sample ``.item()`` a sync per sample."""
    X, y = _data()
    aggregate = msi.aggregate

    def host_offset(base, poisoned, k):
        out = aggregate(base, poisoned, k)
        return msi.Interval.from_stacked(out.stacked + torch.zeros(out.stacked.shape, dtype=out.dtype))  # no device=

    def per_sample_reads(base, poisoned, k):
        [float(base.lo[b].sum().item()) for b in range(base.shape[0])]  # the mistake: B host reads
        return aggregate(base, poisoned, k)

    cfg = TrainConfig(epochs=1, batch_size=B, device="cuda")
    for mistake, check in ((host_offset, lambda d: d.mixes), (per_sample_reads, lambda d: [s for s in d.syncs if s[0] == "item"])):
        monkeypatch.setattr(msi, "aggregate", mistake)
        _, dev = _emulated(lambda: mc.certified_train(mlp([3, 6, 1]), X, y, THREATS["all"], cfg))
        assert check(dev), mistake.__name__
    assert any(where.startswith("steps/interval.py") for _, where in dev.syncs)


def test_fake_device_sees_a_host_tensor_meeting_a_device_tensor():
    dev = FakeDevice()
    with dev:
        a = torch.ones(3, device=FAKE)
        assert a.device == FAKE and not on_fake(torch.ones(3))
        _ = a + torch.tensor(2.0)  # a 0-dim host tensor: CUDA accepts it
        assert dev.mixes == []
        _ = a + torch.ones(3)
        _ = a.sum().item()
        _ = a.cpu()
    assert [m[0] for m in dev.mixes] == ["add"]
    assert [s[0] for s in dev.syncs] == ["item", "cpu(cpu)"]


def test_affine_symbol_table_comes_back_on_the_host(tmp_path):
    """A checkpoint loaded onto the GPU (``map_location``) puts every tensor there; the affine
    step's symbol table brings its own back to the CPU, where it compares them with each batch's
    box (emulated: a table whose tensors are on the device, pickled and loaded)."""
    X, y = _data()
    cfg = TrainConfig(epochs=1, batch_size=B, method="affine", checkpoint_dir=str(tmp_path))
    mc.certified_train(mlp([3, 6, 1]), X, y, THREATS["all"], cfg)
    symbols = torch.load(tmp_path / FILE, weights_only=False)["bounder"][1]
    assert isinstance(symbols, SymbolTable) and symbols.data
    with FakeDevice():
        on_device = SymbolTable(symbols.m, {k: tuple(t.to(FAKE) for t in v) for k, v in symbols.data.items()}, symbols.fixed)
        assert all(on_fake(t) for v in on_device.data.values() for t in v)
        back = pickle.loads(pickle.dumps(on_device))
    assert back.m == symbols.m and back.fixed == symbols.fixed and back.data.keys() == symbols.data.keys()
    for k, v in back.data.items():
        assert not any(on_fake(t) for t in v)
        assert all(torch.equal(a, b) for a, b in zip(v, symbols.data[k]))


def test_a_cuda_device_the_machine_lacks_is_refused_before_any_work():
    with mock.patch("torch.cuda.is_available", lambda: True), mock.patch("torch.cuda.device_count", lambda: 1):
        assert TrainConfig(device="cuda:0").torch_device() == torch.device("cuda", 0)
        with pytest.raises(ValueError, match=r"has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
            TrainConfig(device="cuda:1").torch_device()
    with pytest.raises(ValueError, match="TrainConfig.device must be"):
        TrainConfig(device="cuda:x")


def test_run_figure_of_a_device_run_mixes_nothing():
    """The figure of a run trained on the device, drawn with the data set on the host (as the CLI
    does): no host tensor meets a device tensor (the nominal model's margins were computed from
    host inputs against device weights)."""
    from types import SimpleNamespace

    from mibpcert.report import run_figure

    X, y = _data()

    def run():
        res = mc.certified_train(mlp([3, 6, 1]), X, y, THREATS["all"], TrainConfig(device="cuda", epochs=2, batch_size=B))
        return res, mc.certify(res, X, y, test_eps=0.01)

    (res, rep), _ = _emulated(run)
    dev = FakeDevice()
    with mock.patch("torch.cuda.is_available", lambda: True), dev:
        run_figure(res, rep, SimpleNamespace(X_test=X, y_test=y, X_train=X, y_train=y))
    assert dev.mixes == []
