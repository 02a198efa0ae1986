"""Your own data from files: CSV with a header row, or NumPy ``.npz`` archives.

Every value must be a finite number; labels must fit the task (``binary``: 0 and 1;
``multiclass``: the integers 0 .. C-1; ``regression``: any number). ``task="auto"`` reads the task
from the training labels: exactly the values 0 and 1 is binary, exactly the integers 0 .. C-1 with
C >= 3 is multiclass, labels that are not all integers are regression; other integer labels
(e.g. {-1, 1}, {1, 2, 3}, or integer-valued targets) are ambiguous and an error asking for
``task``. Each problem is one ``ValueError`` naming the file, the column and the row.
"""
from __future__ import annotations

import csv
import os

import numpy as np

from .dataset import Dataset, build, check_fraction, check_size, split, split_validation

TASK_CHOICES = ("auto", "binary", "multiclass", "regression")


def _read_csv(path: str, label_column: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Features, labels and feature names of a CSV file with a header row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise ValueError(f"data file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: cannot read it as CSV ({e})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise ValueError(f"{path}: no label column {label_column!r}; the columns are {header}")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {i} has {len(row)} fields, the header has {len(header)}")
        for j, cell in enumerate(row):
            if not cell.strip():
                raise ValueError(f"{path}: column {header[j]!r}, row {i}: missing value")
            try:
                values[i - 2, j] = float(cell)
            except ValueError:
                raise ValueError(f"{path}: column {header[j]!r}, row {i}: {cell.strip()!r} is not a number "
                                 "(only numeric columns are supported; encode categories as numbers)") from None
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{path}: column {header[j]!r}, row {i + 2}: missing or infinite value ({int(bad.sum())} in all)")
    lab = header.index(label_column)
    features = tuple(h for k, h in enumerate(header) if k != lab)
    return np.delete(values, lab, axis=1), values[:, lab], features


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray, None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in ("X", "y") if k in z}
            files = sorted(z.files)
    except FileNotFoundError:
        raise ValueError(f"data file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read it as .npz ({e})") from None
    if len(arrays) != 2:
        raise ValueError(f"{path}: needs arrays 'X' (N, d) and 'y' (N,), has {files}")
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: 'X' must be (N, d) and 'y' (N,), got {X.shape} and {y.shape}")
    try:
        X, y = X.astype(np.float64), y.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: 'X' and 'y' must be numeric") from None
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError(f"{path}: 'X' or 'y' has missing or infinite values")
    return X, y, None


def _read(path: str, label_column: str):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return _read_npz(path)
    if ext in (".csv", ".txt", ""):
        return _read_csv(path, label_column)
    raise ValueError(f"{path}: unsupported data file type {ext!r}; use .csv (with a header row) or .npz")


def _task_of(y: np.ndarray, task: str, path: str, num_classes: int | None = None) -> tuple[str, int | None]:
    """The task and class count of labels ``y`` (``task="auto"``: read from them, see the module
    docstring); labels that do not fit the task, or the training set's classes, are an error."""
    integral = bool(np.all(y == np.round(y)))
    values = np.unique(y).tolist()
    if task == "auto":
        if values == [0.0, 1.0]:
            task = "binary"
        elif integral and len(values) >= 3 and values == list(range(len(values))):
            task = "multiclass"
        elif not integral:
            task = "regression"
        else:
            raise ValueError(f"{path}: cannot tell the task from integer labels {values[:10]}: binary needs 0 and 1, "
                             "multiclass 0 .. C-1; set task = \"binary\", \"multiclass\" or \"regression\" (after "
                             "relabelling for classification)")
    if task == "binary" and not set(values) <= {0.0, 1.0}:
        raise ValueError(f"{path}: binary labels must be 0 or 1, found {values[:10]}")
    if task == "multiclass" and (not integral or min(values) < 0):
        raise ValueError(f"{path}: multiclass labels must be the integers 0 .. C-1, found {values[:10]}")
    classes = {"binary": 2, "multiclass": int(max(values)) + 1}.get(task)
    if num_classes is not None and classes is not None and classes > num_classes:
        raise ValueError(f"{path}: labels up to {classes - 1}, but the training data has {num_classes} classes")
    return task, classes if num_classes is None else num_classes


def table(path: str, label_column: str = "label", task: str = "auto", test_path: str | None = None,
          val_path: str | None = None, test_fraction: float = 0.2, n_val: int = 0, seed: int = 0,
          standardize: bool = False) -> Dataset:
    """A data set from a file (``.csv`` with a header row and the labels in ``label_column``, or
    ``.npz`` with arrays ``X`` and ``y``). The test set is ``test_path`` when given, else a
    ``test_fraction`` split (stratified for classification, deterministic given ``seed``); the
    validation set is ``val_path`` when given, else ``n_val`` samples of the training part.
    ``standardize``: scale features by the training part's mean and standard deviation."""
    if task not in TASK_CHOICES:
        raise ValueError(f"task must be one of {TASK_CHOICES}, got {task!r}")
    check_size("n_val", n_val)
    if val_path is not None and n_val:
        raise ValueError("give val_path or n_val, not both")
    X, y, names = _read(path, label_column)
    task, num_classes = _task_of(y, task, path)
    stratify = task != "regression"
    if test_path is not None:
        X_te, y_te, names_te = _read(test_path, label_column)
        if X_te.shape[1] != X.shape[1] or (names and names_te and names_te != names):
            raise ValueError(f"{test_path}: its feature columns differ from those of {path}")
        _task_of(y_te, task, test_path, num_classes)
        X_tr, y_tr, X_va, y_va = split_validation(X, y, n_val, seed, stratify)
    else:
        check_fraction(test_fraction)
        X_tr, y_tr, X_va, y_va, X_te, y_te = split(X, y, test_fraction, n_val, seed, stratify)
    if val_path is not None:
        X_va, y_va, names_va = _read(val_path, label_column)
        if X_va.shape[1] != X.shape[1] or (names and names_va and names_va != names):
            raise ValueError(f"{val_path}: its feature columns differ from those of {path}")
        _task_of(y_va, task, val_path, num_classes)
    if task == "regression":
        y_tr, y_te = y_tr.reshape(-1, 1), y_te.reshape(-1, 1)
        y_va = None if y_va is None else y_va.reshape(-1, 1)
    return build((X_tr, y_tr, X_va, y_va, X_te, y_te), task=task, num_classes=num_classes,
                 name=os.path.basename(path), feature_names=names, standardize=bool(standardize))
