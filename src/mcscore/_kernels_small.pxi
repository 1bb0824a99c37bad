# ---------------------------------------------------------------------------
# Lean small calls (included from _kernels.pyx): a Normal / LogNormal kernel
# renewed from new parameter arrays in one C pass (locscale_renewed), and a
# prepared one-round call's draw, f and accumulation in one entry (one_round)
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

from libc.string cimport memcpy


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
    cdef cnp.ndarray lo, sc, out_lo, out_sc, prm, tab, tabd
    cdef Py_ssize_t U = tpl.d.n_units, i
    cdef double mu, s, s2, ref
    cdef const double *vl
    cdef const double *vs
    cdef double *pl = NULL
    cdef double *ps = NULL
    cdef double *pp
    cdef double *ta
    cdef cnp.npy_intp dims[2]
    if type(loc) is not np.ndarray or type(scale) is not np.ndarray:
        return None
    lo, sc = loc, scale
    if (U == 0 or lo.dtype is not _F64 or sc.dtype is not _F64 or loc.shape != shape
            or scale.shape != shape or tpl.d.prm_len != 2 or tpl.d.n_coords != 2 * U
            or tpl.d.t_start[tpl.d.n_coords] != 2 * U or tpl.d.per_category
            or not cnp.PyArray_IS_C_CONTIGUOUS(lo) or not cnp.PyArray_IS_C_CONTIGUOUS(sc)):
        return None
    vl = <const double *> cnp.PyArray_DATA(lo)
    vs = <const double *> cnp.PyArray_DATA(sc)
    for i in range(U):
        mu = vl[i]
        s = vs[i]
        ref = fabs(mu)
        if log_ref and not (ref >= 1.0):
            ref = 1.0
        # the constraints ("real", "positive"), the family's SCALE_RANGE and
        # RESOLUTION, each failing on NaN
        if not (isfinite(mu) and s > 0 and isfinite(s) and s >= lo_s and s <= hi_s
                and not (s < resolution * ref)):
            return None
    out_lo = out_sc = None
    if copy:
        out_lo = cnp.PyArray_EMPTY(lo.ndim, cnp.PyArray_DIMS(lo), cnp.NPY_DOUBLE, 0)
        out_sc = cnp.PyArray_EMPTY(lo.ndim, cnp.PyArray_DIMS(lo), cnp.NPY_DOUBLE, 0)
        pl = <double *> cnp.PyArray_DATA(out_lo)
        ps = <double *> cnp.PyArray_DATA(out_sc)
    dims[0] = U
    dims[1] = 2
    prm = cnp.PyArray_EMPTY(2, dims, cnp.NPY_DOUBLE, 0)
    dims[0] = 3
    dims[1] = 2 * U
    tab = cnp.PyArray_EMPTY(2, dims, cnp.NPY_DOUBLE, 0)   # the kernel's coefficients
    tabd = cnp.PyArray_EMPTY(2, dims, cnp.NPY_DOUBLE, 0)  # the distribution's table
    pp = <double *> cnp.PyArray_DATA(prm)
    ta = <double *> cnp.PyArray_DATA(tab)
    for i in range(U):
        mu = vl[i]
        s = vs[i]
        if copy:
            pl[i] = mu
            ps[i] = s
        pp[2 * i] = mu
        pp[2 * i + 1] = s
        s2 = s * s  # Normal._terms, operation for operation
        ta[i] = 1.0 / s2                   # a
        ta[U + i] = 1.0 / (s2 * s)
        ta[2 * U + i] = -mu / s2           # b
        ta[3 * U + i] = -1.0 / s
        ta[4 * U + i] = 0.0                # c
        ta[5 * U + i] = mu
    memcpy(cnp.PyArray_DATA(tabd), ta, 6 * U * sizeof(double))
    if copy:
        cnp.PyArray_CLEARFLAGS(out_lo, cnp.NPY_ARRAY_WRITEABLE)  # as V.check leaves them
        cnp.PyArray_CLEARFLAGS(out_sc, cnp.NPY_ARRAY_WRITEABLE)
    cdef KernelDist out = KernelDist.__new__(KernelDist)
    out.d = tpl.d
    out.d.prm = pp
    out.d.t_a = ta
    out.d.t_b = ta + 2 * U
    out.d.t_c = ta + 4 * U
    out._keep = (tpl._keep, prm, tab)
    out._set_views()
    return out, out_lo, out_sc, tabd[0], tabd[1], tabd[2]


_F64 = np.dtype(np.float64)


cdef double *_f64_data(cnp.ndarray a, int ndim, str name) except? NULL:
    """The data of a writable, C-contiguous float64 array of ndim dimensions
    (NULL when it is empty, as _rows_ptr; ValueError for another array)."""
    if (cnp.PyArray_TYPE(a) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(a) != ndim
            or not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISWRITEABLE(a)):
        raise ValueError(f"one_round: {name} must be a writable, C-contiguous float64 array "
                         f"of {ndim} dimensions")
    return <double *> cnp.PyArray_DATA(a) if cnp.PyArray_SIZE(a) else NULL


def one_round(KernelDist dist, list bitgens, cnp.ndarray blocks, cnp.ndarray slots, int64_t n,
              int64_t block_size, int64_t n_streams, int n_threads, cnp.ndarray xt, lt,
              cnp.ndarray rows, cnp.ndarray row_off, cnp.ndarray fx, cnp.ndarray stats,
              cnp.ndarray shifts, evaluate):
    """draw_round_rows, then ``evaluate()`` (which fills fx with f's values
    at rows' draws), then accumulate_round, for a round whose blocks are
    blocks[0..R) of streams slots (int64, C-contiguous): the same calls to
    the same block functions, with the arrays' pointers read once instead
    of as typed memoryviews at each call (a small call's fixed cost).
    Returns the global index of a non-finite f value (accumulate_round's),
    or -1."""
    cdef Py_ssize_t R = cnp.PyArray_SIZE(blocks), r, total = 0
    cdef const int64_t *pb
    cdef const int64_t *ps
    cdef const int64_t *po
    cdef mc_round rd
    cdef _ctx_t c
    cdef int nt, code
    if (cnp.PyArray_TYPE(blocks) != cnp.NPY_INT64 or cnp.PyArray_TYPE(slots) != cnp.NPY_INT64
            or cnp.PyArray_TYPE(row_off) != cnp.NPY_INT64 or cnp.PyArray_SIZE(slots) != R
            or cnp.PyArray_SIZE(row_off) != R or R == 0
            or not (cnp.PyArray_IS_C_CONTIGUOUS(blocks) and cnp.PyArray_IS_C_CONTIGUOUS(slots)
                    and cnp.PyArray_IS_C_CONTIGUOUS(row_off))):
        raise ValueError("one_round: blocks, slots and row_off must be R > 0 contiguous int64")
    pb = <const int64_t *> cnp.PyArray_DATA(blocks)
    ps = <const int64_t *> cnp.PyArray_DATA(slots)
    po = <const int64_t *> cnp.PyArray_DATA(row_off)
    memset(&c, 0, sizeof(_ctx_t))
    c.dist = &dist.d
    c.xt = _f64_data(xt, 2, "xt")
    c.ld = cnp.PyArray_DIMS(xt)[1]
    if mc_has_log_column(&dist.d):
        if not isinstance(lt, np.ndarray):
            raise ValueError("one_round: a log-column kernel needs lt")
        c.lt = _f64_data(lt, 2, "lt")
        if (cnp.PyArray_DIMS(lt)[0] != cnp.PyArray_DIMS(xt)[0]
                or cnp.PyArray_DIMS(lt)[1] != c.ld):
            raise ValueError("one_round: lt must have xt's shape")
    c.rows = _f64_data(rows, 2, "rows")
    c.row_off = po
    c.fx = _f64_data(fx, 2, "fx")
    c.fld = cnp.PyArray_DIMS(fx)[1]
    c.stats = _f64_data(stats, 2, "stats")
    c.sld = cnp.PyArray_DIMS(stats)[1]
    c.shifts = _f64_data(shifts, 1, "shifts")
    if (cnp.PyArray_DIMS(xt)[0] < R or cnp.PyArray_DIMS(fx)[0] < R
            or c.ld < dist.d.draw_size * block_size or c.fld < block_size
            or cnp.PyArray_DIMS(rows)[1] != dist.d.draw_size
            or cnp.PyArray_DIMS(stats)[1] != dist.stats_len
            or cnp.PyArray_DIMS(shifts)[0] != cnp.PyArray_DIMS(stats)[0]):
        raise ValueError("one_round: buffers of the wrong shape for the round")
    for r in range(R):
        if pb[r] < 0 or pb[r] * block_size >= n or ps[r] < 0 or ps[r] >= cnp.PyArray_DIMS(stats)[0]:
            raise ValueError("one_round: a block or stream slot out of range")
        if po[r] < 0:
            raise ValueError("one_round: negative row offset")
        total = max(total, po[r] + min(block_size, n - pb[r] * block_size))
    if total > cnp.PyArray_DIMS(rows)[0]:
        raise ValueError(f"one_round: rows holds {rows.shape[0]} draws, the round {total}")
    # the draws (draw_round_rows)
    mc_round_init(&rd, n, 0, block_size, n_threads, R, pb, ps, bitgens)
    nt = mc_round_threads(&rd)
    try:
        c.wss = mc_workspaces(&dist.d, nt, 1)
        mc_drive(&rd, _cb_draw_rows, &c)
    finally:
        mc_workspaces_free(c.wss, nt)
        c.wss = NULL
        mc_round_free(&rd)
    evaluate()
    # the accumulation (accumulate_round)
    mc_round_init(&rd, n, n_streams, block_size, n_threads, R, pb, ps, None)
    c.tmp_len = min(block_size, mc_chunk_len(dist.d.draw_size))
    try:
        c.tmp = mc_alloc_doubles(mc_round_threads(&rd) * c.tmp_len, "the accumulation buffers")
        code = mc_drive(&rd, _cb_accumulate, &c)
        return int(rd.ctl.err[1]) if code == ERR_F_NONFINITE else -1
    finally:
        free(c.tmp)
