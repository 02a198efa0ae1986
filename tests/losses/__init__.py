"""Tests of mibpcert.losses (values, interval bounds)."""
