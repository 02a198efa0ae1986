"""Categorical features on breast cancer: the attacker may change a category, nothing else.

"mean radius" (column 0, standardised) is discretised into its four training quartile bins, each
bin represented by its mean value. Two threat models are certified with intervals:

* ``FeatureValues(0, bin values, k)``: at most k training samples per batch may have their bin
  changed to any other bin (the feature is a finite set of values);
* ``OneHotFeature(columns, k)``: the same bins one-hot encoded as four columns; at most k samples
  per batch may switch to any category.

Full-batch gradient descent (455 samples, 20 steps), 30-16-1 ReLU MLP, BCE; about 10 s. With
``--mibp`` the MIBP path also runs on a 12-sample subset (2 steps, hidden 2, HiGHS, joint
programs, one to two minutes) and prints how much tighter the exact one-binary-per-value encoding is
than the interval hull.

Run:  .venv/bin/python examples/categorical_breast_cancer.py [--mibp]
"""
import argparse
import time

import torch

from mibpcert import TrainConfig, certified_train, certify, data, mlp
from mibpcert.threats import FeatureValues, OneHotFeature


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mibp", action="store_true", help="also run the MIBP path on a small subset")
    args = parser.parse_args()

    ds = data.breast_cancer(seed=0)
    X, Xt, y, yt = ds.X_train.clone(), ds.X_test.clone(), ds.y_train, ds.y_test

    # discretise column 0 into quartile bins of the training data; each bin -> its mean value
    col, col_t = X[:, 0].contiguous(), Xt[:, 0].contiguous()
    edges = torch.quantile(col, torch.tensor([0.25, 0.5, 0.75], dtype=X.dtype))
    bins, bins_t = torch.bucketize(col, edges), torch.bucketize(col_t, edges)
    values = torch.stack([col[bins == j].mean() for j in range(4)])
    X[:, 0], Xt[:, 0] = values[bins], values[bins_t]
    print(f"'{ds.feature_names[0]}' in 4 bins, values {[round(v, 3) for v in values.tolist()]}")

    # the same bins one-hot encoded: columns 29..32 (column 0 dropped)
    onehot, onehot_t = (torch.nn.functional.one_hot(b, 4).to(X.dtype) for b in (bins, bins_t))
    X_oh, Xt_oh = torch.cat([X[:, 1:], onehot], 1), torch.cat([Xt[:, 1:], onehot_t], 1)
    group = [29, 30, 31, 32]

    cfg = TrainConfig(epochs=20, lr=0.05, batch_size=455, loss="bce")
    print(f"{'threat':<34} {'k':>4} {'max width':>10} {'clean acc':>9} {'cert acc':>9} {'seconds':>8}")
    for k in (5, 20):
        for name, threat, Xtr, Xte, d in (
            ("FeatureValues(0, bins)", FeatureValues(0, values.tolist(), k=k), X, Xt, 30),
            ("OneHotFeature([29..32])", OneHotFeature(group, k=k), X_oh, Xt_oh, 33),
        ):
            t0 = time.perf_counter()
            res = certified_train(mlp([d, 16, 1], seed=0), Xtr, y, threat, cfg)
            rep = certify(res, Xte, yt)
            width = max(float(w.max()) for w in res.widths().values())
            print(f"{name:<34} {k:>4} {width:>10.4f} {rep.clean_accuracy:>9.3f} {rep.certified_accuracy:>9.3f} "
                  f"{time.perf_counter() - t0:>8.1f}")

    if args.mibp:
        # a small subset: 12 samples, hidden 2, 2 full-batch steps, one joint program per step (HiGHS
        # with its binaries kept); one to two minutes on 2 cores
        n = 12
        widths = {}
        for method in ("interval", "mibp"):
            c = TrainConfig(epochs=2, lr=0.05, batch_size=n, loss="bce", method=method, backend="highs", mode="joint",
                            time_limit=2.0, workers=2)
            t0 = time.perf_counter()
            res = certified_train(mlp([30, 2, 1], seed=0), X[:n], y[:n], FeatureValues(0, values.tolist(), k=2), c)
            widths[method] = (res.log[-1].mean_width, time.perf_counter() - t0)
        print(f"MIBP on {n} samples, FeatureValues k=2: mean width interval {widths['interval'][0]:.4g}, "
              f"mibp {widths['mibp'][0]:.4g} (ratio {widths['mibp'][0] / widths['interval'][0]:.3f}, {widths['mibp'][1]:.1f} s)")


if __name__ == "__main__":  # guard: the solver workers (workers=2) start by importing this file
    main()
