"""Tests of mibpcert.interval (sound interval tensor operations)."""
