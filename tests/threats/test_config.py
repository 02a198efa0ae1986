"""Threats from configuration tables (``mibpcert.threats`` config: ``from_config`` and the registry):
round trips through ``describe()``, clear errors for missing, unknown and wrongly typed keys."""
from __future__ import annotations

import pytest

from mibpcert.threats import Both, OneHotFeature, from_config


def test_from_config_errors():
    with pytest.raises(ValueError, match="'type' key"):
        from_config({"eps": 0.1})
    with pytest.raises(ValueError, match="unknown threat type 'linf'"):
        from_config({"type": "linf", "eps": 0.1})
    with pytest.raises(ValueError, match="missing the parameter 'eps'"):
        from_config({"type": "linf_features"})
    with pytest.raises(ValueError, match="missing the parameter 'gamma'"):
        from_config({"type": "label_noise", "k": 1})
    with pytest.raises(ValueError, match="exactly two"):
        from_config({"type": "both", "parts": [{"type": "label_flip", "k": 1}]})
    with pytest.raises(ValueError, match="eps must be a finite non-negative"):
        from_config({"type": "linf_features", "eps": -1})
    t = from_config({"type": "both", "paired": True, "parts": [{"type": "linf_features", "eps": 0.1, "k": 2}, {"type": "label_flip", "k": 1, "to": 0}]})
    assert isinstance(t, Both) and t.paired and t.k == 2


# one valid table per threat type; every scalar key is then given values of the wrong type
_LINF = {"type": "linf_features", "eps": 0.1, "k": 1}
VALID_THREATS = {
    "linf_features": {"type": "linf_features", "eps": 0.1, "k": 1, "domain": [0.0, 1.0]},
    "label_flip": {"type": "label_flip", "k": 1, "to": 0},
    "label_noise": {"type": "label_noise", "k": 1, "gamma": 0.1},
    "feature_values": {"type": "feature_values", "feature": 0, "values": [0.0, 1.0], "k": 1},
    "one_hot_feature": {"type": "one_hot_feature", "columns": [0, 1], "k": 1},
    "missing_values": {"type": "missing_values", "features": [0], "low": -1.0, "high": 1.0, "k": 1},
    "l0_features": {"type": "l0_features", "eps": 0.1, "s": 1, "k": 1},
    "l1_features": {"type": "l1_features", "eps1": 0.1, "k": 1},
    "shared_trigger": {"type": "shared_trigger", "mask": [1, 0], "eps": 0.1, "k": 1, "target": 1},
    "union": {"type": "union", "parts": [_LINF, {"type": "label_flip", "k": 1}]},
    "global_budget": {"type": "global_budget", "threat": _LINF, "k": 2},
    "both": {"type": "both", "paired": False, "parts": [_LINF, {"type": "label_flip", "k": 1}]},
}
# what each scalar key holds, and values of another type for it (TOML gives strings, booleans,
# integers, floats and lists)
_KINDS = {"int": ["1", True, 1.5, [1]], "float": ["0.1", True, [0.1]], "bool": ["false", "true", 0, 1],
          "list": ["0", 0.5, True]}
KEY_KINDS = {
    "eps": "float", "eps1": "float", "gamma": "float", "low": "float", "high": "float",
    "k": "int", "to": "int", "feature": "int", "s": "int", "target": "int",
    "paired": "bool", "domain": "list", "values": "list", "columns": "list", "features": "list", "mask": "list",
}
WRONG_TYPED = [
    (kind, key, bad)
    for kind, table in VALID_THREATS.items()
    for key in table if key not in ("type", "parts", "threat")
    for bad in _KINDS[KEY_KINDS[key]]
]


@pytest.mark.parametrize("kind", sorted(VALID_THREATS))
def test_valid_threat_tables_build(kind):
    from_config(VALID_THREATS[kind])


@pytest.mark.parametrize("kind, key, bad", WRONG_TYPED, ids=[f"{k}-{key}-{b!r}" for k, key, b in WRONG_TYPED])
def test_threat_key_of_the_wrong_type_is_refused(kind, key, bad):
    """``paired = "false"`` used to mean True; no key may be coerced from another type."""
    table = dict(VALID_THREATS[kind], **{key: bad})
    with pytest.raises(ValueError, match=key if key not in ("values",) else "values"):
        from_config(table)


def test_nested_threat_keys_are_type_checked():
    inner = dict(_LINF, k="1")
    for table in ({"type": "union", "parts": [inner, {"type": "label_flip", "k": 1}]},
                  {"type": "global_budget", "threat": dict(_LINF, eps="0.1"), "k": 2},
                  {"type": "both", "paired": "false", "parts": [_LINF, {"type": "label_flip", "k": 1}]}):
        with pytest.raises(ValueError):
            from_config(table)


def test_domain_with_one_value_is_one_clear_error():
    with pytest.raises(ValueError, match="domain must be a pair"):
        from_config({"type": "linf_features", "eps": 0.1, "domain": [0]})


def test_from_config_round_trip():
    tables = [
        {"type": "feature_values", "feature": [1, 2, 3], "values": "onehot", "k": 2},
        {"type": "one_hot_feature", "columns": [[0, 1], [2, 3]]},
        {"type": "missing_values", "features": [0, 2], "low": -1.0, "high": 1.0, "k": 1},
        {"type": "l0_features", "eps": 0.1, "s": 2, "k": 3},
        {"type": "l1_features", "eps1": 0.5},
        {"type": "shared_trigger", "mask": [1, 0, 0, 1], "eps": 0.2, "k": 2, "target": 0},
        {"type": "union", "parts": [{"type": "l1_features", "eps1": 0.5, "k": 1}, {"type": "label_flip", "k": 1}]},
        {"type": "global_budget", "k": 4, "threat": {"type": "linf_features", "eps": 0.1}},
    ]
    for t in tables:
        th = from_config(t)
        again = from_config(th.describe())
        assert again.describe() == th.describe()
    assert isinstance(from_config(tables[0]), OneHotFeature)
    with pytest.raises(ValueError, match="unknown key"):
        from_config({"type": "union", "parts": [{"type": "l1_features", "eps": 0.5}, {"type": "label_flip", "k": 1}]})
    with pytest.raises(ValueError, match="at least two"):
        from_config({"type": "union", "parts": [{"type": "label_flip", "k": 1}]})
    with pytest.raises(ValueError, match="missing the parameter 's'"):
        from_config({"type": "l0_features", "eps": 0.1})
