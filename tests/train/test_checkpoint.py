"""Checkpointing (``mibpcert.checkpoint`` in the loop of ``mibpcert.train``): an interrupted run
resumes from its checkpoint and ends with exactly the bounds of an uninterrupted run; a checkpoint
of another run is refused and left as it is."""
import os

import pytest
import torch

import mibpcert.bounders as bounders_mod
import mibpcert.checkpoint as checkpoint_mod
from mibpcert import TrainConfig, certified_train, mlp
from mibpcert.threats import Both, LabelFlip, LinfFeatures

F64 = torch.float64
N, BATCH, EPOCHS = 10, 4, 3
TOTAL_STEPS = EPOCHS * 3


class Interrupt(Exception):
    pass


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, 2, dtype=F64, generator=g)
    return X, (X[:, 0] - X[:, 1] > 0).to(F64)


def val_data():
    g = torch.Generator().manual_seed(5)
    X = torch.randn(8, 2, dtype=F64, generator=g)
    return X, (X[:, 0] - X[:, 1] > 0).to(F64)


def config(ckpt=None, **kw):
    base = dict(epochs=EPOCHS, lr=0.2, batch_size=BATCH, weight_decay=0.01, lr_decay=0.7, shuffle=True, seed=4)
    base.update(kw)
    return TrainConfig(checkpoint_dir=str(ckpt) if ckpt is not None else None, **base)


def threat():
    return Both(LinfFeatures(0.02, k=2), LabelFlip(1))


def run(ckpt=None, X=None, y=None, model_seed=1, th=None, **kw):
    if X is None:
        X, y = data()
    cfg = config(ckpt, **kw)
    extra = {}
    if cfg.select_epoch:
        extra = dict(zip(("X_val", "y_val"), val_data()))
    return certified_train(mlp([2, 4, 1], seed=model_seed), X, y, th or threat(), cfg, **extra)


def count_steps(monkeypatch, raise_at=None):
    """Wrap the interval step: count calls, optionally raise on call number ``raise_at``."""
    calls = {"n": 0}
    real = bounders_mod.interval_step

    def wrapper(*a, **k):
        calls["n"] += 1
        if raise_at is not None and calls["n"] == raise_at:
            raise Interrupt(f"simulated crash at step {raise_at}")
        return real(*a, **k)

    monkeypatch.setattr(bounders_mod, "interval_step", wrapper)
    return calls


def assert_same_result(a, b):
    assert a.param_bounds.keys() == b.param_bounds.keys()
    for name in a.param_bounds:
        assert torch.equal(a.param_bounds[name][0], b.param_bounds[name][0]), name
        assert torch.equal(a.param_bounds[name][1], b.param_bounds[name][1]), name
    for name, p in a.nominal.state_dict().items():
        assert torch.equal(p, b.nominal.state_dict()[name]), name
    assert [s.step for s in a.log] == [s.step for s in b.log]
    assert [s.epoch for s in a.log] == [s.epoch for s in b.log]
    assert [s.lr for s in a.log] == [s.lr for s in b.log]
    assert [s.mean_width for s in a.log] == [s.mean_width for s in b.log]
    assert a.selected_epoch == b.selected_epoch
    assert a.epoch_val_certified == b.epoch_val_certified
    assert [e.epoch for e in a.epochs] == [e.epoch for e in b.epochs]
    for ea, eb in zip(a.epochs, b.epochs):
        for name, (lo, hi) in ea.param_bounds.items():
            assert torch.equal(lo, eb.param_bounds[name][0]) and torch.equal(hi, eb.param_bounds[name][1]), name
            assert torch.equal(ea.nominal[name], eb.nominal[name]), name


@pytest.fixture(scope="module")
def reference():
    return run()


@pytest.mark.parametrize("crash_step", [2, 3, 4, 5, 7, 9])
def test_resume_after_crash_in_interval_step(tmp_path, monkeypatch, reference, crash_step):
    calls = count_steps(monkeypatch, raise_at=crash_step)
    with pytest.raises(Interrupt):
        run(tmp_path)
    ck = torch.load(os.path.join(tmp_path, "checkpoint.pt"), weights_only=False)
    assert ck["step"] == crash_step - 1
    monkeypatch.undo()
    calls = count_steps(monkeypatch)
    res = run(tmp_path)
    assert calls["n"] == TOTAL_STEPS - (crash_step - 1), "the resumed run must not redo finished steps"
    assert_same_result(res, reference)
    assert [s.step for s in res.log] == list(range(1, TOTAL_STEPS + 1))


@pytest.mark.parametrize("crash_save", [3, 4, 7, 8, 12])
def test_resume_after_crash_while_saving(tmp_path, monkeypatch, reference, crash_save):
    """A crash inside a save (the checkpoint keeps the previous state), including the saves at
    the end of an epoch (calls 4, 8, 12: after the lr decay)."""
    real = checkpoint_mod.save
    n = {"k": 0}

    def failing_save(*a, **k):
        n["k"] += 1
        if n["k"] == crash_save:
            raise Interrupt("crash while saving")
        return real(*a, **k)

    monkeypatch.setattr(checkpoint_mod, "save", failing_save)
    with pytest.raises(Interrupt):
        run(tmp_path)
    monkeypatch.undo()
    res = run(tmp_path)
    assert_same_result(res, reference)


def test_resume_with_epoch_selection(tmp_path, monkeypatch):
    ref = run(select_epoch=True, val_eps=0.01, epochs=4)
    count_steps(monkeypatch, raise_at=8)  # during the third epoch
    with pytest.raises(Interrupt):
        run(tmp_path, select_epoch=True, val_eps=0.01, epochs=4)
    monkeypatch.undo()
    calls = count_steps(monkeypatch)
    res = run(tmp_path, select_epoch=True, val_eps=0.01, epochs=4)
    assert calls["n"] == 12 - 7
    assert len(res.epoch_val_certified) == 4
    assert_same_result(res, ref)


def test_finished_run_is_not_recomputed(tmp_path, monkeypatch, reference):
    first = run(tmp_path)
    assert_same_result(first, reference)
    calls = count_steps(monkeypatch)
    again = run(tmp_path)
    assert calls["n"] == 0
    assert_same_result(again, reference)


def test_settings_outside_the_fingerprint_still_resume(tmp_path, monkeypatch, reference):
    count_steps(monkeypatch, raise_at=5)
    with pytest.raises(Interrupt):
        run(tmp_path)
    monkeypatch.undo()
    calls = count_steps(monkeypatch)
    res = run(tmp_path, workers=2)
    assert calls["n"] == TOTAL_STEPS - 4
    assert_same_result(res, reference)


@pytest.mark.parametrize(
    "change",
    [
        dict(lr=0.1),
        dict(weight_decay=0.0),
        dict(seed=5),
        dict(batch_size=5),
        dict(exact_matmul=True),
        "threat",
        "data",
        "init",
    ],
    ids=lambda c: c if isinstance(c, str) else next(iter(c)),
)
def test_checkpoint_of_another_run_is_refused(tmp_path, monkeypatch, change):
    """A checkpoint is never resumed, nor overwritten, by another run: one clear error before any
    step; once it is removed, the other run trains from the start."""
    count_steps(monkeypatch, raise_at=5)  # an interrupted run leaves a checkpoint at step 4
    with pytest.raises(Interrupt):
        run(tmp_path)
    monkeypatch.undo()
    kw = change if isinstance(change, dict) else {}
    if change == "threat":
        kw = dict(th=Both(LinfFeatures(0.03, k=2), LabelFlip(1)))
    elif change == "data":
        X, y = data(seed=1)
        kw = dict(X=X, y=y)
    elif change == "init":
        kw = dict(model_seed=2)
    fresh = run(None, **kw)
    path = tmp_path / checkpoint_mod.FILE
    before = path.read_bytes()
    calls = count_steps(monkeypatch)
    with pytest.raises(ValueError, match="is the checkpoint of another run"):
        run(tmp_path, **kw)
    assert calls["n"] == 0 and path.read_bytes() == before
    path.unlink()
    res = run(tmp_path, **kw)
    steps_per_epoch = -(-N // kw.get("batch_size", BATCH))
    assert calls["n"] == EPOCHS * steps_per_epoch
    assert_same_result(res, fresh)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_finishes_the_step_saves_and_stops(tmp_path, monkeypatch, reference, sig):
    """SIGINT/SIGTERM during step 3: the step finishes, is saved, the run stops with
    TrainingInterrupted naming the checkpoint; the same call again resumes at step 4 and ends with
    the bounds of an uninterrupted run."""
    import signal

    calls = {"n": 0}
    real = bounders_mod.interval_step

    def signalling(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), getattr(signal, sig))
        return real(*a, **k)

    monkeypatch.setattr(bounders_mod, "interval_step", signalling)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # SIG_IGN when run in the background
    with pytest.raises(checkpoint_mod.TrainingInterrupted, match="interrupted after step 3, which is saved in") as e:
        run(tmp_path)
    assert e.value.step == 3 and calls["n"] == 3
    assert {s: signal.getsignal(s) for s in before} == before, "the handlers are restored"
    monkeypatch.undo()
    counted = count_steps(monkeypatch)
    res = run(tmp_path)
    assert counted["n"] == TOTAL_STEPS - 3
    assert_same_result(res, reference)


@pytest.mark.parametrize("method", ["affine", "relational"])
def test_the_affine_forms_resume_exactly(tmp_path, monkeypatch, method):
    """The checkpoint keeps the affine forms and their symbols: an interrupted affine (or
    relational MIBP) run resumes to the box and forms of an uninterrupted run, bit for bit."""
    kw = dict(method="affine") if method == "affine" else dict(method="mibp", mode="joint", relax="lp",
                                                                 relational=True, time_limit=None)
    th = LinfFeatures(0.03)
    ref = run(None, th=th, **kw)
    count_steps(monkeypatch, raise_at=5)
    with pytest.raises(Interrupt):
        run(tmp_path, th=th, **kw)
    monkeypatch.undo()
    res = run(tmp_path, th=th, **kw)
    assert_same_result(res, ref)
    for n, f in ref.relational.items():
        g = res.relational[n]
        assert torch.equal(f.c, g.c) and torch.equal(f.G, g.G) and torch.equal(f.e, g.e), n
