"""The package version (read by reports and the command line)."""
__version__ = "0.1.0"
