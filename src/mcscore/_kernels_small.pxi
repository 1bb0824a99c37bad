# ---------------------------------------------------------------------------
# Lean small calls (included from _kernels.pyx): a Normal / LogNormal kernel
# renewed from new parameter arrays in one C pass
# ---------------------------------------------------------------------------
#
# A training loop builds Normal(loc, scale) anew at every step.  The general
# path validates each parameter (dtype, finite, positive: several NumPy
# calls each), checks that the gradients can be estimated
# (Normal._check_differentiable), computes the score terms
# (Normal._terms), lays them out in the table (_TermStructure.coefficients)
# and renews the kernel (KernelDist.renewed): a few dozen small array
# operations.  locscale_renewed does the same work for parameters of the
# template's own shape in one pass over the units, with the same
# floating-point operations in the same order (the results are the same
# bits), and declines (returns None) whenever a check would fail or the
# input is not a plain float64 array: the caller then runs the general
# path, which raises its usual error.


def locscale_renewed(KernelDist tpl, loc, scale, tuple shape, bint log_ref, double lo_s,
                     double hi_s, double resolution, bint copy=True):
    """A KernelDist like ``tpl`` (a Normal or LogNormal kernel of
    parameters of shape ``shape``, its score table in the layout of
    Normal._terms with equal shapes: the loc terms of units 0..U-1, then the
    scale terms) renewed for the parameters ``loc``, ``scale``, with the
    checks of the general path done on the way.

    Returns (kernel, loc copy, scale copy, a, b, c): the parameters as
    Distribution.__init__ stores them (float64 copies, read-only; None
    without ``copy``) and the table's coefficients as KernelTemplates gives
    them; or None when the inputs are not float64 ndarrays of exactly
    ``shape`` or any check fails (loc finite; scale > 0 and finite; scale
    in [lo_s, hi_s], the family's SCALE_RANGE; scale >= resolution * |loc|,
    or resolution * max(1, |loc|) with ``log_ref``).
    """
    cdef cnp.ndarray lo, sc
    cdef Py_ssize_t U = tpl.d.n_units, i
    cdef double mu, s, s2, ref
    cdef const double[::1] vl, vs
    cdef double[::1] pl, ps
    cdef double[:, ::1] prm, tab, tabd
    if type(loc) is not np.ndarray or type(scale) is not np.ndarray:
        return None
    lo, sc = loc, scale
    if (U == 0 or lo.dtype is not _F64 or sc.dtype is not _F64 or loc.shape != shape
            or scale.shape != shape or tpl.d.prm_len != 2 or tpl.d.n_coords != 2 * U
            or tpl.d.t_start[tpl.d.n_coords] != 2 * U or tpl.d.per_category):
        return None
    if not (cnp.PyArray_IS_C_CONTIGUOUS(lo) and cnp.PyArray_IS_C_CONTIGUOUS(sc)):
        return None
    vl = lo.reshape(-1)
    vs = sc.reshape(-1)
    for i in range(U):
        mu = vl[i]
        s = vs[i]
        ref = fabs(mu)
        if log_ref and not (ref >= 1.0):
            ref = 1.0
        # the constraints ("real", "positive"), Normal.SCALE_RANGE and
        # Normal.RESOLUTION, each failing on NaN
        if not (isfinite(mu) and s > 0 and isfinite(s) and s >= lo_s and s <= hi_s
                and not (s < resolution * ref)):
            return None
    out_lo = out_sc = None
    if copy:
        out_lo = np.empty(shape)
        out_sc = np.empty(shape)
        pl = out_lo.reshape(-1)
        ps = out_sc.reshape(-1)
    prm = np.empty((U, 2))
    tab = np.empty((3, 2 * U))   # the kernel's coefficients
    tabd = np.empty((3, 2 * U))  # the distribution's table (its own copy)
    for i in range(U):
        mu = vl[i]
        s = vs[i]
        if copy:
            pl[i] = mu
            ps[i] = s
        prm[i, 0] = mu
        prm[i, 1] = s
        s2 = s * s  # Normal._terms, operation for operation
        tab[0, i] = 1.0 / s2
        tab[1, i] = -mu / s2
        tab[2, i] = 0.0
        tab[0, U + i] = 1.0 / (s2 * s)
        tab[1, U + i] = -1.0 / s
        tab[2, U + i] = mu
    tabd[...] = tab
    if copy:
        out_lo.setflags(write=False)
        out_sc.setflags(write=False)
    cdef KernelDist out = KernelDist.__new__(KernelDist)
    out.d = tpl.d
    out.d.prm = &prm[0, 0] if U else NULL
    out.d.t_a = &tab[0, 0] if U else NULL
    out.d.t_b = &tab[1, 0] if U else NULL
    out.d.t_c = &tab[2, 0] if U else NULL
    out._keep = (tpl._keep, prm, tab)
    out._set_views()
    ta = np.asarray(tabd)
    return out, out_lo, out_sc, ta[0], ta[1], ta[2]


_F64 = np.dtype(np.float64)
