"""mibpcert test suite: one test module (or folder) per package module (layout: tests/README.md)."""
