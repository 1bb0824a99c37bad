"""The package version (one place, imported by the package and its CLI)."""
__version__ = "0.1.0"
