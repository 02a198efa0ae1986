"""mibpcert test suite: one test module (or folder) per package module; see tests/README.md."""
