"""Threat models: which changes an attacker may make to the training data.

Every threat is one object used by both certification paths (:mod:`.base`). For the interval
path it describes, for a batch, a :class:`Region`:

* ``features`` / ``labels``: an enclosure of what *every* sample of the batch may become (the
  clean data for budgeted threats, the perturbed box for threats that touch every sample);
* ``poisoned_features`` / ``poisoned_labels``: an enclosure of what a sample the attacker picks
  may become (it contains the first enclosure);
* ``k``: how many samples of the batch the attacker may pick (``None``: every sample).

Why the k-of-N aggregation is sound: for each parameter coordinate j let ``c_i`` be an upper bound
of sample i's gradient over the unpicked region and ``p_i >= c_i`` one over the picked region. For
any set S of at most k picked samples, the batch gradient sum is at most
``sum_{i not in S} c_i + sum_{i in S} p_i = sum_i c_i + sum_{i in S} (p_i - c_i)``, which is at
most ``sum_i c_i`` plus the k largest differences ``p_i - c_i`` (all differences are >= 0). The
lower bound is symmetric. Taking the top k per coordinate lets the attacker choose a different S
for every coordinate, which only loosens the bound.

For the MIBP path each threat writes the same set exactly into a program. The modules, by kind:
:mod:`.features` (norm balls), :mod:`.values` (finite and range value sets), :mod:`.labels`,
:mod:`.triggers` (backdoors), :mod:`.combinations` (both, union, global budget) and
:mod:`.config` (threats from config tables).
"""
from .base import FeatureThreat, Region, TaskInfo, Threat, clean_labels
from .combinations import Both, CompositeRegion, GlobalBudget, Union
from .config import check_keys, check_threat_table, from_config, threat_keys
from .features import L0Features, L1Features, LinfFeatures
from .labels import LabelFlip, LabelNoise
from .triggers import SharedTrigger
from .values import FeatureValues, MissingValues, OneHotFeature

__all__ = [
    "Both", "CompositeRegion", "FeatureThreat", "FeatureValues", "GlobalBudget", "L0Features", "L1Features",
    "LabelFlip", "LabelNoise", "LinfFeatures", "MissingValues", "OneHotFeature", "Region", "SharedTrigger",
    "TaskInfo", "Threat", "Union", "check_keys", "check_threat_table", "clean_labels", "from_config", "threat_keys",
]
