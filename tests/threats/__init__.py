"""Tests of mibpcert.threats, split by kind: base, features, labels, triggers, combinations, config."""
