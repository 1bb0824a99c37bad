"""Shared checks of the inline draws (tests/test_inline_fills.py and
tests/test_normal_fill_families.py): an estimate's bits, and the same
estimates with the inline draws switched off."""
from __future__ import annotations

import numpy as np


def result_bits(r):
    """The bits of every gradient and standard error of a GradientEstimate."""
    parts = [np.atleast_1d(np.asarray(a, dtype=np.float64)).ravel()
             for k in sorted(r.grad) for a in (r.grad[k], r.stderr[k])]
    return np.concatenate(parts).view(np.uint64)


def assert_same_without_inline(setup, run_all):
    """run_all() (a list of result_bits, one and two threads in pairs) gives
    the same bits with the inline draws and with NumPy's (setup(False)),
    and one and two threads agree."""
    inline = run_all()
    setup(False)
    try:
        numpy = run_all()
    finally:
        assert setup(True)
    for a, b in zip(inline, numpy):
        assert np.array_equal(a, b)
    for i in range(0, len(inline), 2):
        assert np.array_equal(inline[i], inline[i + 1])
