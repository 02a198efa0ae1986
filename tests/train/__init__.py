"""Tests of mibpcert.train (certified_train: recipe, checkpoints, frozen layers, precision, divergence)."""
