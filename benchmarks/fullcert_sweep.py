"""FullCert reference sweep: certified accuracy on Two-Moons for several feature-poisoning radii.

Setting (the FullCert Two-Moons experiment): sklearn ``make_moons`` noise 0.1, unscaled, 1000
training / 200 validation / 200 test points (``mibpcert.data.two_moons(n_val=200)``), a 2-20-1 ReLU
MLP with torch's default init, BCE on the mean batch loss, batches of 100 in the given order, plain
SGD, every training sample's features perturbed by up to ``eps`` (``LinfFeatures(eps)``), test
radius = training radius, and the epoch whose box certifies most of the validation set at ``eps``
(``TrainConfig(select_epoch=True, val_eps=eps)``). Each seed seeds both the data and the init.

Settings compared (see the notes written with the table for why there are several):

* ``literal``     lr 0.005, 20 epochs: the setting as specified for this benchmark;
* ``appendix-b``  lr 0.01, 100 epochs: FullCert appendix B.2 defaults for Two-Moons;
* ``sum-loss``    lr 0.5, 20 epochs: lr 0.005 applied to the *summed* batch loss (= 0.5 on the mean);
* ``literal-cleansel``  literal, but the epoch picked by clean validation accuracy (diagnostic,
  not a sound choice: poisoning would move it too).

Usage::

    python benchmarks/fullcert_sweep.py                          # all four settings, 3 seeds
    python benchmarks/fullcert_sweep.py --settings literal --seeds 10
    python benchmarks/fullcert_sweep.py --lr 0.02 --epochs 40 --select last   # one custom setting
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch
from common import mean_std, write_result

from mibpcert.certificates import certify
from mibpcert.config import TrainConfig
from mibpcert.data import two_moons
from mibpcert.losses import per_sample_loss
from mibpcert.model import mlp
from mibpcert.threats import LinfFeatures
from mibpcert.train import BoundsDiverged, certified_train

HERE = os.path.dirname(os.path.abspath(__file__))
EPS = (1e-4, 1e-3, 1e-2, 1e-1)
# reference certified accuracies for this sweep (as given for this benchmark)
REFERENCE = {1e-4: 0.80, 1e-3: 0.78, 1e-2: 0.63, 1e-1: 0.35}
# FullCert paper, appendix B.3, table 1 (2-layer MLPs, mean ± std over 10 seeds)
PAPER_TABLE1 = {1e-4: (0.851, 0.037), 1e-3: (0.837, 0.040), 1e-2: (0.724, 0.117), 1e-1: (0.368, 0.148)}
SETTINGS = {
    "literal": dict(lr=0.005, epochs=20, select="certified"),
    "appendix-b": dict(lr=0.01, epochs=100, select="certified"),
    "sum-loss": dict(lr=0.5, epochs=20, select="certified"),
    "literal-cleansel": dict(lr=0.005, epochs=20, select="clean"),
}
SELECT = ("certified", "clean", "last")


def best_clean_epoch(model: torch.nn.Module, d, lr: float, epochs: int) -> int:
    """Epoch (0-based) whose nominal model has the best clean validation accuracy (first on ties).

    Replays the nominal run of ``certified_train`` (same loss expression, optimizer and batches).
    Diagnostic only: under poisoning the attacker also moves this choice, so a box certified for the
    epoch picked on clean data is not a sound certificate for the selected model.
    """
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=0.0)
    n = d.X_train.shape[0]
    accs = []
    for _ in range(epochs):
        for i in range(0, n, 100):
            opt.zero_grad()
            per_sample_loss("bce", net(d.X_train[i : i + 100]), d.y_train[i : i + 100]).mean().backward()
            opt.step()
        with torch.no_grad():
            accs.append(float(((net(d.X_val)[:, 0] > 0).to(d.y_val.dtype) == d.y_val).double().mean()))
    return max(range(epochs), key=lambda e: (accs[e], -e))


def run_one(seed: int, eps: float, lr: float, epochs: int, select: str) -> dict:
    d = two_moons(n_train=1000, n_test=200, n_val=200, noise=0.1, seed=seed)
    model = mlp([2, 20, 1], seed=seed)
    t0 = time.perf_counter()
    if select == "clean":
        epochs = best_clean_epoch(model, d, lr, epochs) + 1
    cert_sel = select == "certified"
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=100, loss="bce", method="interval",
                         select_epoch=cert_sel, val_eps=eps if cert_sel else 0.0)
    try:
        res = certified_train(model, d.X_train, d.y_train, LinfFeatures(eps), cfg,
                                 X_val=d.X_val if cert_sel else None, y_val=d.y_val if cert_sel else None)
    except BoundsDiverged:
        # bounds became non-finite: nothing is certified (the run is counted as 0)
        return dict(cert=0.0, clean=float("nan"), epoch=-1, seconds=time.perf_counter() - t0, diverged=True)
    rep = certify(res, d.X_test, d.y_test, test_eps=eps)
    return dict(cert=rep.certified_accuracy, clean=rep.clean_accuracy, epoch=res.selected_epoch,
                seconds=time.perf_counter() - t0, diverged=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. N-1), each seeds data and init")
    ap.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS),
                    help="named training settings to run (ignored when --lr or --epochs is given)")
    ap.add_argument("--lr", type=float, default=None, help="custom setting: SGD step on the mean loss")
    ap.add_argument("--epochs", type=int, default=None, help="custom setting: number of epochs")
    ap.add_argument("--eps", type=float, nargs="+", default=list(EPS))
    ap.add_argument("--select", choices=SELECT, default=None,
                    help="custom setting: epoch choice: 'certified' (best validation certified accuracy at eps, "
                         "sound; default), 'clean' (best clean validation accuracy, diagnostic, not sound), 'last'")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny ops: 1 is fastest)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fullcert_sweep.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.lr is not None or args.epochs is not None or args.select is not None:
        lr = args.lr if args.lr is not None else SETTINGS["literal"]["lr"]
        ep = args.epochs if args.epochs is not None else SETTINGS["literal"]["epochs"]
        sel = args.select or "certified"
        settings = {"custom": dict(lr=lr, epochs=ep, select=sel)}
    else:
        settings = {k: SETTINGS[k] for k in args.settings}

    seeds = list(range(args.seeds))
    t_all = time.perf_counter()
    lines = [
        "| setting | eps | certified acc. | clean (nominal) acc. | reference | FullCert tab. 1 | selected epochs |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    print(lines[0] + "\n" + lines[1], flush=True)
    for key, s in settings.items():
        name = f"{key} (lr {s['lr']:g}, {s['epochs']} ep, {s['select']})"
        for eps in args.eps:
            runs = [run_one(seed, eps, s["lr"], s["epochs"], s["select"]) for seed in seeds]
            cert = [r["cert"] for r in runs]
            clean = [r["clean"] for r in runs]
            epochs = ",".join(("div" if r["diverged"] else str(r["epoch"])) for r in runs)
            ref = REFERENCE.get(eps)
            paper = PAPER_TABLE1.get(eps)
            line = (f"| {name} | {eps:g} | {mean_std(cert, std_of_one=True)} | {mean_std(clean, std_of_one=True)} | "
                    f"{'' if ref is None else f'{ref:.2f}'} | "
                    f"{'' if paper is None else f'{paper[0]:.3f} ± {paper[1]:.3f}'} | {epochs} |")
            lines.append(line)
            print(line, f"   [{sum(r['seconds'] for r in runs):.0f}s; per seed {', '.join(f'{c:.3f}' for c in cert)}]",
                  file=sys.stdout, flush=True)
    total = time.perf_counter() - t_all
    table = "\n".join(lines)
    print(f"\ntotal {total:.0f}s")

    md = [
        "# FullCert Two-Moons sweep (interval certified training)",
        "",
        f"make_moons noise 0.1, 1000 train / 200 val / 200 test (unscaled), 2-20-1 ReLU MLP (torch default "
        f"init, float64), BCE mean, batch 100 in order, SGD, `LinfFeatures(eps)` on every training sample, "
        f"test eps = train eps; epoch choice in the setting's name: `certified` = best validation certified "
        f"accuracy at eps (`select_epoch=True`), `clean` = best clean validation accuracy, `last` = last epoch; "
        f"seeds {seeds} (seed = data and init). Mean ± std (population) over seeds; selected epochs are "
        f"0-based. Total {total:.0f}s with {args.threads} torch thread(s).",
        "",
        "Generated by `" + " ".join(["python benchmarks/fullcert_sweep.py", *(argv if argv is not None else sys.argv[1:])]) + "`.",
        "",
        table,
        "",
        NOTES,
    ]
    write_result(args.out, "\n".join(md) + "\n")
    print(f"wrote {args.out}")
    return 0


NOTES = """\
## Notes: which setting, and the gap to the reference

**In short:** the literal setting is the one to report; it matches the reference at eps 1e-4 and
1e-3. Its low clean accuracy in a first run came from seed 0 alone, not from under-training in
general. At eps 1e-1 the gap comes from the epoch choice: picking the epoch on clean validation
accuracy reproduces the reference, but that choice is not sound. At eps 1e-2 ours is higher than
the reference (0.71-0.77 vs 0.63) yet agrees with the paper's own table 1; that gap is unexplained.

*reference* is the target given for this benchmark (0.80 / 0.78 / 0.63 / 0.35); *FullCert tab. 1*
is the FullCert paper's appendix B.3 table 1 (2-layer MLPs on Two-Moons, 10 random seeds). The
paper's defaults (appendix B.2) are batch 100, lr 0.01, at most 100 epochs, "3-layer MLP" (counting
input, hidden and output layers, i.e. the 2-20-1 net here), 1000/200/200 points; it does not say
how the epoch is chosen.

Settings: **literal** = the setting specified for this benchmark; **appendix-b** = the paper's
lr/epochs; **sum-loss** = lr 0.005 applied to the *summed* batch loss (0.5 on the mean);
**literal-cleansel** = literal, but the epoch is picked by *clean* validation accuracy of the
nominal model (a diagnostic: not a sound choice, since poisoning would move it too).

* **Literal is not under-trained on average; seed 0 is.** With lr 0.005 and 200 steps, seed 0's
  init and data give a nominal test accuracy of 0.635 (the net barely leaves its init); the other
  seeds reach 0.78-0.85 (final nominal test accuracies of seeds 0-9: 0.635, 0.845, 0.825, 0.845,
  0.775, 0.82, 0.83, 0.83, 0.80, 0.85). A run on seed 0 alone reads "~0.62 clean, 0.625/0.60/0.47/0.0 certified"
  (the first quick run; the last value without epoch selection). Xavier- or Kaiming-normal init gives a similar mean nominal
  accuracy (0.82-0.84 over 10 seeds, default init 0.81), so the init is not the missing ingredient.
* **Exploratory 10-seed runs** (`--seeds 10`, certified accuracy at eps 1e-4 / 1e-3 / 1e-2 / 1e-1):
  literal 0.810 ± 0.068 / 0.807 ± 0.071 / 0.773 ± 0.103 / 0.475 ± 0.147;
  appendix-b 0.830 ± 0.030 / 0.825 ± 0.035 / 0.782 ± 0.075 / 0.468 ± 0.165;
  literal-cleansel 0.810 ± 0.068 / 0.806 ± 0.071 / 0.772 ± 0.103 / 0.331 ± 0.219.
* **Appendix-b** trains the nominal net further (clean ~0.83) and matches the paper's table 1 best at
  eps <= 1e-3, but validation picks an epoch < 45: interval bounds only grow (about x2 every 50 steps
  at lr 0.01); at eps 1e-3 the validation certified accuracy reaches 0 between epochs 45 and 65, and
  with the last epoch (`--select last`) this setting certifies 0.0 at every eps, 1e-4 included.
  Epochs 45-100 are wasted work.
* **Sum-loss** does not match: its nominal net trains better (~0.90 clean after 20 epochs) but the
  bounds explode in the first epochs; validation always picks epoch 0 (clean 0.83 in the table) and
  eps >= 1e-2 certifies (almost) nothing.
* **Closest match: literal (or appendix-b) at eps <= 1e-3; at eps 1e-1 only the clean-validation
  epoch choice.** With the sound certified-validation choice, eps 0.1 picks epoch 0 (10 steps) on
  most seeds: the net still predicts nearly one class and the box is narrow, so about that class's
  share of the test set (~0.5) is certified. Picking the epoch by clean validation accuracy (as a
  plain training pipeline would) lands on late epochs with wide boxes and gives 0.33 over 10 seeds
  (0.27 over the 3 in the table), matching the reference 0.35 and the paper's 0.368 ± 0.148. The last epoch (`--select last`, 3 seeds) gives ~0.15.
* **Unexplained: eps 1e-2.** Literal and appendix-b give 0.71-0.78 against the reference 0.63 (the paper's
  own table 1 says 0.724 ± 0.117, which ours match). Checked and ruled out: init (above), and the
  weight-gradient enclosure (replacing mibpcert's per-sample exact products by a mid-radius
  product of the batch matrices, as in BoundFlow, changes no number of the literal 10-seed run by
  more than 0.01). Likely
  candidates we could not check: shuffling per epoch, float32, a different BCE bound, or seed noise
  (the seed-to-seed std at this radius is ~0.1).
"""

if __name__ == "__main__":
    raise SystemExit(main())
