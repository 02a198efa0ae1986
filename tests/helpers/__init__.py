"""Shared test helpers (never tests themselves): plain-torch attacks, enumerations of poisoned data sets, small problems and box assertions."""
