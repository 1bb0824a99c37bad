"""Partial type stub of the compiled module ``mcscore._vr`` (internal: every
name is typed Any).  The C-level API for other extensions is
``_kernels.pxd``; the typed stub of the kernels is ``_kernels.pyi``."""
from typing import Any

def __getattr__(name: str) -> Any: ...
