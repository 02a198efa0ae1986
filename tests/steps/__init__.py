"""Tests of mibpcert.steps (the interval SGD step)."""
