"""Sphinx-Gallery hooks, importable by name (so the configuration pickles)."""
import os
import shutil
import time
from pathlib import Path

# PNG files an example wrote (as it would for a user) and when we last showed
# each, so an image is shown once, below the code that wrote it.
_SEEN = {}
_T0 = time.time()  # files older than this build are not this build's


def argv(script_file, script_vars):
    """Arguments for each gallery script: ``--quick`` unless
    ``MCSCORE_DOCS_FULL=1`` is set."""
    return [] if os.environ.get("MCSCORE_DOCS_FULL", "0") == "1" else ["--quick"]


def written_figures(block, block_vars, gallery_conf):
    """Show the PNG figures an example saved under ``mcscore-figures/`` (the
    examples' default figure folder, relative to the example's directory)
    while this block ran: the examples save their figures to files and close
    them, so the matplotlib scraper sees none."""
    from sphinx_gallery.scrapers import figure_rst

    folder = Path(block_vars["src_file"]).parent / "mcscore-figures"
    if not folder.is_dir():
        return ""
    shown = []
    for png in sorted(folder.glob("*.png")):
        mtime = png.stat().st_mtime
        if _SEEN.get(png) == mtime or mtime < _T0:
            continue
        _SEEN[png] = mtime
        target = next(block_vars["image_path_iterator"])
        shutil.copyfile(png, target)
        shown.append(target)
    return figure_rst(shown, gallery_conf["src_dir"]) if shown else ""
