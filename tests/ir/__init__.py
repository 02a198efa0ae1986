"""Tests of mibpcert.ir (program, encoder, inputs)."""
