"""Files of saved objects: a header (what the file holds, the format version, the versions of
mibpcert and torch that wrote it) around a payload, written with ``torch.save``.

Reading unpickles Python objects (a torch module, a threat): read only files you trust, as with
``torch.load(weights_only=False)``.
"""
from __future__ import annotations

import logging
import os

import torch

from .version import __version__

FORMAT_VERSION = 1
log = logging.getLogger("mibpcert")


def write(path: str | os.PathLike, kind: str, payload: dict) -> None:
    """Write ``payload`` under a header naming ``kind``; the file appears whole or not at all (it is
    written beside its place and renamed)."""
    save_atomic(path, {"format": kind, "format_version": FORMAT_VERSION, "mibpcert": __version__,
                       "torch": torch.__version__, "payload": payload})


def save_atomic(path: str | os.PathLike, obj) -> None:
    """``torch.save`` of ``obj`` to ``path``, whole or not at all: written beside its place, then
    renamed over it (a kill at any moment leaves the previous file)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.partial"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read(path: str | os.PathLike, kind: str, map_location="cpu") -> dict:
    """The payload of a file written by :func:`write` for ``kind``, its tensors on ``map_location``
    (``None``: where they were saved). A file that is not one, or one from a newer format, is a
    ``ValueError``; one written by another mibpcert version is read and logged."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no saved {kind} at {path!r}")
    try:
        doc = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(f"{path!r} is not a saved {kind} ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != kind or "payload" not in doc:
        raise ValueError(f"{path!r} is not a saved {kind}")
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path!r} was written by a newer mibpcert ({doc.get('mibpcert')}, file format "
                         f"{doc.get('format_version')}); this is {__version__} (format {FORMAT_VERSION}): upgrade to read it")
    if doc.get("mibpcert") != __version__:
        log.warning("%s was written by mibpcert %s; reading it with %s", path, doc.get("mibpcert"), __version__)
    return doc["payload"]
