"""Sphinx-Gallery hooks, importable by name (so the configuration pickles)."""
import os


def argv(script_file, script_vars):
    """Arguments for each gallery script: ``--quick`` unless
    ``MCSCORE_DOCS_FULL=1`` is set."""
    return [] if os.environ.get("MCSCORE_DOCS_FULL", "0") == "1" else ["--quick"]
