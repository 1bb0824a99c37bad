"""C callbacks (scipy.LowLevelCallable) called from the OpenMP loop."""
import ctypes
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import LowLevelCallable

import mcscore as mc
from mcscore import integrands as I

D3 = mc.Normal([0.5, -1.0, 0.2], [1.0, 2.0, 0.5])


def py_sq(x):
    return (x * x).sum(axis=-1)


def test_numba_cfunc_matches_python_bit_for_bit():
    numba = pytest.importorskip("numba")
    from numba import types

    @numba.cfunc(types.float64(types.CPointer(types.float64), types.intp))
    def sq(x, d):
        acc = 0.0
        for i in range(d):
            acc += x[i] * x[i]
        return acc

    ref = mc.score_grad(py_sq, D3, 50_000, rng=4)
    for f in (LowLevelCallable(sq.ctypes), sq):  # a cfunc object is accepted directly
        for t in (1, 2):
            r = mc.score_grad(f, D3, 50_000, rng=4, n_threads=t)
            assert r.info["f"] == "callback"
            for k in ref.grad:
                assert np.array_equal(r.grad[k], ref.grad[k])


@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("clib")
    src = d / "cb.c"
    src.write_text(
        r"""
        #include <stdint.h>
        #include <math.h>
        double sq(double *x, intptr_t d) {
            double acc = 0.0;
            for (intptr_t i = 0; i < d; i++) acc += x[i] * x[i];
            return acc;
        }
        double scaled(double *x, intptr_t d, void *user) {
            return *(double *)user * x[0];
        }
        /* signals an error (non-zero) when the first coordinate exceeds 3 */
        int guarded(double *x, intptr_t d, double *out, void *user) {
            if (x[0] > 3.0) return 7;
            *out = x[0];
            return 0;
        }
        double sq_int(double *x, int d) { return x[0] * x[0]; }
        double bad(double *x, intptr_t d) { return x[0] > 2.0 ? NAN : x[0]; }
        """
    )
    lib = d / ("cb.dll" if sys.platform == "win32" else "cb.so")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", str(src), "-o", str(lib), "-lm"], check=True)
    return ctypes.CDLL(str(lib))


def _llc(lib, name, restype, argtypes, user_data=None):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return LowLevelCallable(fn, user_data=user_data)


P = ctypes.POINTER(ctypes.c_double)


def test_ctypes_c_function(clib):
    f = _llc(clib, "sq", ctypes.c_double, [P, ctypes.c_ssize_t])
    ref = mc.score_grad(py_sq, D3, 40_000, rng=1)
    r = mc.score_grad(f, D3, 40_000, rng=1)
    for k in ref.grad:
        assert np.array_equal(r.grad[k], ref.grad[k])


def test_ctypes_int_length_signature(clib):
    f = _llc(clib, "sq_int", ctypes.c_double, [P, ctypes.c_int])
    d = mc.Normal(0.5, 2.0)
    r = mc.score_grad(f, d, 100_000, rng=2)
    assert abs(r.grad["loc"] - 1.0) < 5 * r.stderr["loc"]
    assert abs(r.grad["scale"] - 4.0) < 5 * r.stderr["scale"]


def test_ctypes_user_data(clib):
    w = ctypes.c_double(3.0)
    f = _llc(clib, "scaled", ctypes.c_double, [P, ctypes.c_ssize_t, ctypes.c_void_p],
             user_data=ctypes.cast(ctypes.pointer(w), ctypes.c_void_p))
    d = mc.Normal(0.5, 2.0)
    r = mc.score_grad(f, d, 100_000, rng=2)
    ref = mc.score_grad(I.linear(3.0), d, 100_000, rng=2)
    assert np.array_equal(r.grad["loc"], ref.grad["loc"])


def test_callback_error_code_names_the_draw(clib):
    f = _llc(clib, "guarded", ctypes.c_int, [P, ctypes.c_ssize_t, P, ctypes.c_void_p])
    with pytest.raises(ValueError, match=r"callback signalled an error .* at draw \d+ \(x = 3\.|"
                                         r"callback signalled an error .* at draw \d+ \(x = [4-9]"):
        mc.score_grad(f, mc.Normal(0.0, 1.0), 10**5, rng=0)


def test_callback_nan_names_the_draw(clib):
    f = _llc(clib, "bad", ctypes.c_double, [P, ctypes.c_ssize_t])
    with pytest.raises(ValueError, match=r"non-finite value .* at draw \d+ \(x = [2-9]"):
        mc.score_grad(f, mc.Normal(0.0, 1.0), 10**5, rng=0)


def test_python_ctypes_callback_works_from_worker_threads():
    proto = ctypes.CFUNCTYPE(ctypes.c_double, P, ctypes.c_ssize_t)

    def body(x, d):
        return x[0] * x[0]

    cb = proto(body)
    d = mc.Normal(0.5, 2.0)
    r = mc.score_grad(LowLevelCallable(cb), d, 20_000, rng=3, n_threads=2)
    ref = mc.score_grad(I.power(2), d, 20_000, rng=3)
    assert np.array_equal(r.grad["loc"], ref.grad["loc"])


def test_unsupported_signature_is_a_type_error(clib):
    f = _llc(clib, "sq", ctypes.c_double, [ctypes.c_ssize_t, P])
    with pytest.raises(TypeError, match="signature .* is not supported"):
        mc.score_grad(f, D3, 100)
