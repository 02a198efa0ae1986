"""The settings whose bounds must stay bit-identical across refactors (test_golden_bounds.py).

Every example config (epochs as configured, one solver worker) and shortened versions of the
benchmark settings: the interval-overhead run (Two-Moons 1000, 2-20-1, BCE, batch 100; 2 epochs),
the MIBP-Cert setting (Two-Moons 100, 2-10-1, hinge, lr 0.2, full batch, joint HiGHS LP; 2 steps)
and the threat-ratio table (5-feature Two-Moons, 5-8-1, hinge, lr 0.2, batch 10; one step per threat,
per_sample and joint HiGHS MILP). No time limits: a limit-stopped bound depends on the clock.

Regenerate (only when a change is meant to change bounds): ``python tests/golden/settings.py``.
"""
from __future__ import annotations

import glob
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STORE = os.path.join(HERE, "bounds.npz")


def _example(path: str):
    from mibpcert import TrainConfig, certified_train, data, mlp, threats
    from mibpcert.cli import load_config, output_width

    cfg = load_config(path)
    train = dict(cfg["train"], workers=1, progress=False)
    tc = TrainConfig(**train)
    ds = data.load(cfg["data"]["name"], **{k: v for k, v in cfg["data"].items() if k != "name"})
    widths = [ds.num_features, *cfg["model"]["hidden"], output_width(tc.loss, ds)]
    model = mlp(widths, seed=cfg["model"]["seed"], dtype=tc.torch_dtype)
    val = (ds.X_val, ds.y_val) if tc.select_epoch else (None, None)
    return certified_train(model, ds.X_train, ds.y_train, threats.from_config(cfg["threat"]), tc, *val)


def _moons_1000():
    from mibpcert import TrainConfig, certified_train, data, mlp
    from mibpcert.threats import LinfFeatures

    ds = data.two_moons(n_train=1000, n_test=10, noise=0.1, seed=0)
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=100, loss="bce")
    return certified_train(mlp([2, 20, 1], seed=0), ds.X_train, ds.y_train, LinfFeatures(0.01), cfg)


def _mibp_cert():
    from mibpcert import TrainConfig, certified_train, data, mlp
    from mibpcert.threats import LinfFeatures

    ds = data.two_moons(n_train=100, n_test=10, noise=0.1, seed=0)
    cfg = TrainConfig(epochs=2, lr=0.2, batch_size=100, loss="hinge", method="mibp", mode="joint", relax="lp",
                      time_limit=None)
    return certified_train(mlp([2, 10, 1], seed=0), ds.X_train, ds.y_train, LinfFeatures(0.01), cfg)


def _threat_ratio(name: str, mode: str):
    from mibpcert import TrainConfig, certified_train, mlp

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import threat_ratios

    X, y = threat_ratios.dataset()
    cfg = TrainConfig(epochs=1, lr=0.2, batch_size=10, loss="hinge", method="mibp", mode=mode, relax="milp",
                      time_limit=None)
    return certified_train(mlp([5, 8, 1], seed=0), X[:10], y[:10], threat_ratios.threats()[name](), cfg)


def settings() -> dict:
    """name -> zero-argument function returning a TrainResult."""
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.toml"))):
        out["example " + os.path.basename(path)] = (lambda p=path: _example(p))
    out["bench interval_overhead (2 epochs)"] = _moons_1000
    out["bench mibp-cert joint lp (2 steps)"] = _mibp_cert
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import threat_ratios

    for name in threat_ratios.threats():
        for mode in ("per_sample", "joint"):
            out[f"bench threat_ratios {name} {mode} (1 step)"] = (lambda n=name, m=mode: _threat_ratio(n, m))
    return out


def flat(res) -> np.ndarray:
    """(2, P) float64: every lower bound, then every upper bound, in state_dict order."""
    lo = torch.cat([lo.reshape(-1) for lo, _ in res.param_bounds.values()])
    hi = torch.cat([hi.reshape(-1) for _, hi in res.param_bounds.values()])
    return torch.stack([lo, hi]).to("cpu", torch.float64).numpy()


def machine() -> str:
    return f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    arrays = {}
    for name, run in settings().items():
        arrays[name] = flat(run())
        print(name, arrays[name].shape, flush=True)
    np.savez_compressed(STORE, __machine__=np.array(machine()), **arrays)
    print("wrote", STORE)
