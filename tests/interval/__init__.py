"""Tests of mibpcert.interval (tensor operations, bounded losses, one interval SGD step)."""
