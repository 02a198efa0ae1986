"""Tests of mibpcert.encode (loss gradients, training-step programs, prediction margins, tightening)."""
