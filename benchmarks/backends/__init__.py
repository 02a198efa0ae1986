"""MIBP solver backends and modes compared: certified accuracy, tightness and time.

Two settings, both Two-Moons (``mibpcert.data.two_moons``, ``make_moons`` noise 0.1, unscaled),
float64, every training sample's features perturbed by up to eps (``LinfFeatures(eps)``):

* **MIBP-Cert setting**: 100 training / 200 validation / 200 test points, a 2-h-1 ReLU MLP
  (h = 10, 20; torch default init, seeded), hinge loss, full-batch gradient descent (batch 100, so
  one step per epoch), lr ``--lr`` (0.2), ``--epochs`` epochs (5), test radius = training radius.
  Certified test accuracy is reported for the **final** epoch and for the epoch with the best
  *validation* certified accuracy at eps (``select_epoch=True``: the choice only reads bounds on
  clean validation data, so the selected box is still a sound certificate).
* **Mini-batch setting**: 1000 training points, a 2-16-1 MLP, BCE, batches of 100 in order,
  eps 0.01, lr ``--mb-lr`` (0.1), ``--mb-steps`` steps (10 = one epoch): mean and max parameter
  width after every step, and their ratio to the interval-only run.

Three kinds of measurement, all in one run of this script:

1. *Backend comparison* (MIBP-Cert setting, h = 10, eps = 0.01, seed 0, ``--cmp-epochs`` epochs):
   one full ``certified_train`` per method / backend / mode where it fits the time budget; the rest
   are marked with the reason and the single-step estimate of 2.
2. *Single-step probe*: the programs of one step (state after a few interval steps), a subset of
   them (whole per-sample programs, or a few objectives of the joint program) bounded by every
   backend: time per objective (both sides), the extrapolated time of the full step, and the mean
   width of the bounds relative to the interval bound of the same quantity and to HiGHS-LP.
3. *Accuracy sweep* (MIBP-Cert setting): interval vs MIBP (HiGHS, McCormick LP, joint) for
   h in ``--hidden``, eps in ``--eps``, ``--seeds`` seeds.

plus the mini-batch runs and a cProfile of one MIBP step (program building vs solving vs other).

Widths: *cum. ratio* = mean parameter width of the MIBP run / mean width of the interval-only run
at the same step (what the certificate sees); *step ratio* = ``StepLog.width_ratio``, the MIBP box
over the interval box computed from the same previous box (the gain of one step), averaged.

Usage::

    python -m benchmarks.backends --quick   # < 5 min on 2 cores: seed 0, h 10, eps 0.01
    python -m benchmarks.backends           # ~25 min on 2 cores

(from the repository root). Modules: ``settings`` (setting constants, targets, data), ``runs`` (one
``certified_train`` run), ``probe`` (part 2), ``profiling`` (the cProfile), ``compare`` (part 1),
``sweep`` (part 3), ``minibatch``, ``report`` / ``targets`` / ``analysis`` / ``plot`` (the result
files) and ``__main__`` (options and run order). Helpers shared with the other benchmark scripts:
``benchmarks/common.py``.
"""
import os

# SCIP is disabled for certification (docs/backends.md, "SCIP is not trusted"); this benchmark
# still times it, and its SCIP bounds are not certificates
os.environ.setdefault("MIBPCERT_ALLOW_UNVERIFIED_SCIP", "1")
