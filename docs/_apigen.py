"""Write the API reference pages from the package's ``__all__`` lists.

Each public module gets one section listing its public names (classes first,
then functions) in an autosummary table with one generated page per name.
Run by ``conf.py`` at every build, so the reference follows the code.
"""
import importlib
import inspect
from pathlib import Path

from sphinx.ext.autodoc.mock import mock

# The optional bridges import their framework at import time; the reference
# is generated without PyTorch or JAX installed (conf.py mocks the same
# modules for autodoc).
MOCKED = ["torch", "jax", "jaxlib"]

# (module, title, blurb): the order of the reference.
SECTIONS = [
    ("mcscore", "Estimators, distributions and results",
     "The top-level namespace: ``import mcscore as mc``."),
    ("mcscore.integrands", "Fused integrands",
     "Built-in f evaluated inside the kernels (no Python per draw)."),
    ("mcscore.finance", "Finance", "Likelihood-ratio and pathwise Greeks."),
    ("mcscore.vi", "Variational inference", "Black-box VI by score-function gradients."),
    ("mcscore.rl", "Reinforcement learning", "REINFORCE policy gradients."),
    ("mcscore.distributed", "Distributed runs", "Dask: the same streams on a cluster."),
    ("mcscore.embed", "Embedding", "Build flags for code that embeds the kernels."),
    ("mcscore.torch", "PyTorch bridge", "Differentiable expectations for torch models."),
    ("mcscore.jax", "JAX bridge", "Differentiable expectations for JAX models."),
    ("mcscore.result", "Linear maps of a gradient estimate",
     "What :meth:`GradientEstimate.linear <mcscore.GradientEstimate.linear>` returns."),
]

# Modules whose reference lists only some of their public names (the rest is
# documented under the top-level namespace already).
ONLY = {"mcscore.result": ["LinearEstimate"]}

SKIP_TOP = {"finance", "integrands", "rl", "vi", "FAMILIES", "CALLBACK_SIGNATURES"}


def _public(modname):
    try:
        with mock(MOCKED):
            mod = importlib.import_module(modname)
    except ImportError:
        return None
    names = ONLY.get(modname, getattr(mod, "__all__", None))
    if names is None:
        names = [n for n, v in vars(mod).items()
                 if not n.startswith("_") and getattr(v, "__module__", "").startswith(modname)
                 and (inspect.isclass(v) or inspect.isfunction(v))]
    out = []
    for n in names:
        obj = getattr(mod, n, None)
        if modname == "mcscore" and n in SKIP_TOP:
            continue
        if inspect.ismodule(obj) or obj is None:
            continue
        out.append((n, obj))
    classes = sorted(n for n, o in out if inspect.isclass(o))
    funcs = sorted(n for n, o in out if not inspect.isclass(o))
    return classes, funcs


def write_api(outdir):
    outdir = Path(outdir)
    outdir.mkdir(exist_ok=True)
    lines = ["API reference", "=============", "",
             "Generated from each module's ``__all__``.", ""]
    for modname, title, blurb in SECTIONS:
        pub = _public(modname)
        if pub is None or not (pub[0] or pub[1]):
            continue
        classes, funcs = pub
        lines += [title, "-" * len(title), "", blurb, "",
                  f".. currentmodule:: {modname}", ""]
        for kind, names in (("Classes", classes), ("Functions", funcs)):
            if not names:
                continue
            lines += [f".. rubric:: {kind}", "", ".. autosummary::",
                      "   :toctree: generated", "   :nosignatures:", ""]
            lines += [f"   {n}" for n in names]
            lines.append("")
    text = "\n".join(lines) + "\n"
    target = outdir / "index.rst"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
