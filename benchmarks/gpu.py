"""Seconds per step of certified training on the CPU and on CUDA.

Setting: scikit-learn's digits (all 1797 images, pixels / 16, binary task digit < 5 vs >= 5),
BCE on the mean batch loss, SGD lr 0.05, batches in the given order, ``LinfFeatures(eps)`` on
every sample. Rows:

* ``plain torch SGD``: a minimal torch loop (the reference), 64-256-256-1 MLP, batch 1000;
* ``certified_train interval``: the whole step as ``certified_train`` runs it (nominal SGD step,
  interval step with outward rounding, checks, log; ``StepLog.seconds``), same MLP and batch;
* ``certified_train affine``: affine forms (float64 only). Their memory grows with parameters x
  symbols, and order reduction keeps one symbol per parameter entry, so the 64-256-256-1 MLP
  (82,689 parameters) is refused by the affine size check; the affine rows use a 64-16-1 MLP on
  the first 100 images, batch 50 (3,200 data symbols per batch: every pixel of every sample),
  ``affine_symbols=1000``.

Each row is float64 and float32 (IEEE matmuls: TF32 off), on the CPU and, when
``torch.cuda.is_available()``, on CUDA (``torch.cuda.synchronize()`` around every timed step of
the plain loop; a certified step ends with its one host read of the step's check, which waits for
the device). Reported: the median seconds per step after ``--warmup`` steps, and GPU / CPU.

Usage::

    python benchmarks/gpu.py                      # prints the table, writes results/gpu.md
    python benchmarks/gpu.py --steps 5 --warmup 2 --threads 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from common import cpu_description, fmt, say, verdict, versions, write_result

import mibpcert as mc
from mibpcert.model import mlp

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = 0.25  # interval rows: a GPU step at most this fraction of the CPU step (>= 4x faster)
WIDE, NARROW = [64, 256, 256, 1], [64, 16, 1]
AFFINE_SAMPLES, AFFINE_BATCH, AFFINE_SYMBOLS = 100, 50, 1000


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.as_tensor(d.data / 16.0), torch.as_tensor((d.target >= 5).astype(float))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_step_seconds(X, y, widths, batch: int, lr: float, steps: int, warmup: int, device, dtype) -> list[float]:
    """Seconds of each plain torch SGD step after ``warmup`` steps (batches in order, cycling)."""
    net = mlp(widths, seed=0).to(device=device, dtype=dtype)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    X, y = X.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    out = []
    for s in range(warmup + steps):
        i = (s * batch) % X.shape[0]
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(net(X[i:i + batch])[:, 0], y[i:i + batch]).backward()
        opt.step()
        sync(device)
        if s >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def certified_step_seconds(X, y, widths, batch: int, lr: float, eps: float, steps: int, warmup: int, device, dtype,
                           method: str) -> list[float]:
    """``StepLog.seconds`` of each step of one ``certified_train`` run after ``warmup`` steps."""
    per_epoch = -(-X.shape[0] // batch)
    cfg = mc.TrainConfig(epochs=-(-(warmup + steps) // per_epoch), lr=lr, batch_size=batch, method=method,
                         device=str(device), dtype=str(dtype).removeprefix("torch."), affine_symbols=AFFINE_SYMBOLS)
    sync(device)
    res = mc.certified_train(mlp(widths, seed=0), X, y, mc.threats.LinfFeatures(eps), cfg)
    sync(device)
    return [s.seconds for s in res.log[warmup:warmup + steps]]


def rows(args) -> list[dict]:
    X, y = digits()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    out = []
    for dtype in (torch.float64, torch.float32):
        for method in ("plain", "interval", "affine"):
            if method == "affine" and dtype != torch.float64:
                continue
            wide = method != "affine"
            Xm, ym = (X, y) if wide else (X[:AFFINE_SAMPLES], y[:AFFINE_SAMPLES])
            widths, batch = (WIDE, args.batch) if wide else (NARROW, AFFINE_BATCH)
            row = {"method": method, "dtype": str(dtype).removeprefix("torch."), "widths": widths, "batch": batch}
            for dev in devices:
                say(f"{method} {row['dtype']} on {dev} ...")
                if method == "plain":
                    t = plain_step_seconds(Xm, ym, widths, batch, args.lr, args.steps, args.warmup, dev, dtype)
                else:
                    t = certified_step_seconds(Xm, ym, widths, batch, args.lr, args.eps, args.steps, args.warmup, dev,
                                               dtype, method)
                row[dev.type] = statistics.median(t)
            out.append(row)
    return out


NAMES = {"plain": "plain torch SGD", "interval": "certified_train interval", "affine": "certified_train affine"}


def table(result: list[dict]) -> str:
    lines = ["| method | dtype | MLP | batch | CPU s / step | GPU s / step | GPU / CPU |", "|---|---|---|---:|---:|---:|---:|"]
    for r in result:
        gpu = r.get("cuda")
        ratio = fmt(gpu / r["cpu"], ".2f") + "×" if gpu is not None else "–"
        lines.append(f"| {NAMES[r['method']]} | {r['dtype']} | {'-'.join(map(str, r['widths']))} | {r['batch']} | "
                     f"{fmt(r['cpu'], '.4f')} | {fmt(gpu, '.4f', none='no GPU')} | {ratio} |")
    return "\n".join(lines)


def target_line(result: list[dict]) -> str:
    iv = [r for r in result if r["method"] == "interval"]
    head = f"Target: a CUDA interval step at most {TARGET:g}× its CPU time (at least {1 / TARGET:g}× faster)"
    if not torch.cuda.is_available():
        return f"{head}: **not measured** (no GPU on this machine)."
    parts = [f"{r['dtype']} {r['cuda'] / r['cpu']:.2f}× {verdict(r['cuda'] / r['cpu'], TARGET, at_most=True, spec='.2f', unit='×')}"
             for r in iv]
    return f"{head}: " + "; ".join(parts) + "."


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row (median)")
    ap.add_argument("--warmup", type=int, default=1, help="steps before the timed ones")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--eps", type=float, default=0.001)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gpu.md"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 bounds need IEEE matmuls (mibpcert refuses TF32)
    torch.set_float32_matmul_precision("highest")
    result = rows(args)
    gpu = (f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
           else "**No GPU was available** (torch.cuda.is_available() is False): only the CPU rows are measured; "
                "the GPU figures have not been measured yet")
    machine = (f"{versions()}, {cpu_description()}, torch threads {torch.get_num_threads()}, load average at the end "
               f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else versions())
    text = "\n\n".join([
        "# Certified training on the CPU and on CUDA",
        f"scikit-learn digits, all 1797 images (pixels / 16), binary digit < 5 vs >= 5; BCE mean, SGD lr {args.lr:g}, "
        f"`LinfFeatures({args.eps:g})` on every sample; median of {args.steps} steps after {args.warmup} warm-up steps. "
        f"Affine rows: {'-'.join(map(str, NARROW))} on the first {AFFINE_SAMPLES} images, batch {AFFINE_BATCH}, "
        f"`affine_symbols={AFFINE_SYMBOLS}` (the affine size check refuses {'-'.join(map(str, WIDE))}: its forms need "
        "parameters × symbols memory, and order reduction keeps one symbol per parameter entry). "
        "float32 with TF32 off (IEEE matmuls). " + machine + ".",
        gpu + ".",
        "Generated by `python benchmarks/gpu.py`.",
        table(result),
        target_line(result),
    ]) + "\n"
    print(text)
    write_result(args.out, text)


if __name__ == "__main__":
    sys.exit(main())
