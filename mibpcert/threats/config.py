"""Threats from config tables (the CLI's ``[threat]``): the registry of threat types, the keys
each table accepts, and their structural checks. The values themselves are checked by the
threat constructors."""
from __future__ import annotations

import inspect
import re
from typing import Any

from .base import Threat
from .combinations import Both, GlobalBudget, Union
from .features import L0Features, L1Features, LinfFeatures
from .labels import LabelFlip, LabelNoise
from .triggers import SharedTrigger
from .values import FeatureValues, MissingValues, OneHotFeature

_REGISTRY = {
    "linf_features": lambda d: LinfFeatures(d["eps"], d.get("k"), d.get("domain")),
    "label_flip": lambda d: LabelFlip(d.get("k"), d.get("to")),
    "label_noise": lambda d: LabelNoise(d.get("k"), d["gamma"]),
    "feature_values": lambda d: FeatureValues(d["feature"], d["values"], d.get("k")),
    "one_hot_feature": lambda d: OneHotFeature(d["columns"], d.get("k")),
    "missing_values": lambda d: MissingValues(d["features"], d["low"], d["high"], d.get("k")),
    "l0_features": lambda d: L0Features(d["eps"], d["s"], d.get("k")),
    "l1_features": lambda d: L1Features(d["eps1"], d.get("k")),
    "shared_trigger": lambda d: SharedTrigger(d["mask"], d["eps"], d.get("k"), d.get("target")),
    "union": lambda d: Union(*[from_config(_nested(p, "threat.parts")) for p in _union_parts(d)]),
    "global_budget": lambda d: GlobalBudget(from_config(_nested(d["threat"], "threat.threat")), d["k"]),
}


def _union_parts(d: dict) -> list:
    parts = d["parts"]
    if not isinstance(parts, list) or len(parts) < 2:
        raise ValueError("threat type 'union' needs 'parts' with at least two threat tables ([[threat.parts]])")
    return parts


def _both_parts(d: dict) -> list:
    parts = d.get("parts")
    if not isinstance(parts, list) or len(parts) != 2:
        raise ValueError("threat type 'both' needs 'parts' with exactly two threat tables ([[threat.parts]])")
    return parts


def _nested(d, where: str) -> dict:
    """A nested threat table, with its keys checked like the top-level one."""
    if not isinstance(d, dict):
        raise ValueError(f"[{where}] must be a threat table")
    check_threat_table(d, where)
    return d


def check_keys(table: str, d: dict, allowed, what: str = "") -> None:
    """Refuse a key of config table ``table`` that is not in ``allowed``."""
    for k in d:
        if k not in allowed:
            raise ValueError(f"unknown key {k!r} in [{table}]{what}; allowed keys: {', '.join(sorted(allowed))}")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _all_subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_all_subclasses(sub))]


def threat_keys() -> dict[str, list[str] | None]:
    """For every threat ``type`` of the config registry, the keys its table accepts (``None`` if
    unknown). The keys are read from the constructor of the threat class whose snake-case name is
    the type (``linf_features`` -> ``LinfFeatures``)."""
    classes = {_snake(c.__name__): c for c in _all_subclasses(Threat)}
    out: dict[str, list[str] | None] = {}
    for kind in _REGISTRY:
        cls = classes.get(kind)
        out[kind] = None if cls is None else ["type"] + [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    out["both"] = ["type", "paired", "parts"]
    return out


def check_threat_table(d: Any, where: str = "threat") -> None:
    """Check the structure and keys of a threat config table."""
    if not isinstance(d, dict):
        raise ValueError(f"[{where}] must be a table")
    if "type" not in d:
        raise ValueError(f"[{where}] needs a 'type' key")
    keys = threat_keys()
    kind = d["type"]
    if kind not in keys:
        raise ValueError(f"unknown threat type {kind!r}; choose one of {', '.join(sorted(keys))}")
    if keys[kind] is not None:
        check_keys(where, d, keys[kind], f" for threat type {kind!r}")
    if kind == "both":
        for p in _both_parts(d):
            check_threat_table(p, "threat.parts")


def from_config(d: dict) -> Threat:
    """Build a threat from a config table such as ``{"type": "linf_features", "eps": 0.01}``;
    ``{"type": "both", "paired": false, "parts": [{...}, {...}]}`` combines two."""
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError("a threat config needs a 'type' key")
    kind = d["type"]
    if kind == "both":
        a, b = _both_parts(d)
        return Both(from_config(a), from_config(b), paired=d.get("paired", False))
    if kind not in _REGISTRY:
        raise ValueError(f"unknown threat type {kind!r}; choose one of {', '.join(sorted(_REGISTRY) + ['both'])}")
    try:
        return _REGISTRY[kind](d)
    except KeyError as e:
        raise ValueError(f"threat {kind!r} is missing the parameter {e.args[0]!r}") from None
