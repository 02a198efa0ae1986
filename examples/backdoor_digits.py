"""Backdoor on digits "1" vs "7": a certified bound on the success of a shared trigger.

Threat (``SharedTrigger``): the attacker picks one pattern ``delta`` on the 2x2 top-left patch of
the 8x8 image (each of the 4 pixels moved by up to eps = 1.0, the same pattern for every poisoned
image), adds it to at most k = 2 training images per batch and relabels them "7" (target 1).
At test time the backdoor succeeds on a "1" when ``x + delta`` is classified "7".

Recipe: a 64-16-1 MLP is first trained on the clean data (30 full-batch steps, assumed trusted,
e.g. a public pre-trained model), then fine-tuned for 3 full-batch steps on the possibly poisoned
data; ``certified_train`` bounds every parameter the fine-tuning can reach under the threat, and
``backdoor_certificate`` bounds the triggered logits of every test "1" over that box and every
pattern of the threat: a point whose prediction provably never becomes "7" is safe. The fraction
of unsafe points is an upper bound on the attack success rate. Finally a concrete backdoor attack
(pattern +1 on the patch, two relabelled "1"s per step) is run in plain torch for comparison.

Run:  .venv/bin/python examples/backdoor_digits.py      (a few seconds, intervals only)
"""
import time

import torch

from mibpcert import TrainConfig, certified_train, certify, data, mlp
from mibpcert.backdoor import backdoor_certificate
from mibpcert.threats import SharedTrigger


def train_plain(model, X, y, steps, lr, poison=None):
    """Full-batch gradient descent in plain torch; ``poison(X, y)`` may replace the batch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        Xb, yb = poison(X, y) if poison else (X, y)
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(Xb)[:, 0], yb).backward()
        opt.step()
    return model


def main() -> None:
    ds = data.digits_1v7(seed=0)
    X, y, Xt, yt = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    mask = [0] * 64
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):  # the 2x2 top-left patch
        mask[8 * r + c] = 1
    eps, k, target = 1.0, 2, 1
    trigger = SharedTrigger(mask, eps, k=k, target=target)

    pre = train_plain(mlp([64, 16, 1], seed=0), X, y, steps=30, lr=0.5)  # clean pre-training
    cfg = TrainConfig(epochs=3, lr=0.1, batch_size=X.shape[0], loss="bce")

    t0 = time.perf_counter()
    res = certified_train(pre, X, y, trigger, cfg)
    rep = backdoor_certificate(res, Xt, yt, trigger)
    clean = certify(res, Xt, yt)
    whole_image = certify(res, Xt, yt, trigger_eps=eps)  # l-inf trigger on every pixel, for contrast
    print(f"certified fine-tuning + certificates: {time.perf_counter() - t0:.1f} s, "
          f"max parameter width {max(float(w.max()) for w in res.widths().values()):.4f}")
    print(f"clean test accuracy {clean.clean_accuracy:.3f}, certified (no trigger) {clean.certified_accuracy:.3f}")
    print(f"test '1's certified never to become '7' under any 2x2-patch trigger: "
          f"{rep.certified_fraction:.3f} of {int(rep.eligible.sum())}")
    print(f"attack success rate <= {rep.success_upper:.3f}  (sound upper bound)")
    print(f"for contrast, a trigger of radius {eps} on every pixel: success <= {whole_image.backdoor_success_upper:.3f}")

    # a concrete backdoor attack in plain torch, the same recipe
    delta = torch.zeros(64, dtype=X.dtype)
    delta[torch.tensor(mask, dtype=torch.bool)] = eps
    ones = torch.nonzero(y == 0).reshape(-1)[:k]

    def poison(Xb, yb):
        Xp, yp = Xb.clone(), yb.clone()
        Xp[ones] = Xb[ones] + delta
        yp[ones] = float(target)
        return Xp, yp

    import copy

    attacked = train_plain(copy.deepcopy(pre), X, y, steps=3, lr=0.1, poison=poison)
    with torch.no_grad():
        hit = (attacked(Xt + delta)[:, 0] > 0) & (yt == 0)
    print(f"concrete attack (pattern +{eps} on the patch): success {float(hit.sum()) / int((yt == 0).sum()):.3f}"
          f" (<= the bound; no certified-safe point flipped: {not bool((hit & rep.safe).any())})")


if __name__ == "__main__":
    main()
