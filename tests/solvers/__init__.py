"""Tests of mibpcert.solvers (solvers/): one module per backend or helper module."""
