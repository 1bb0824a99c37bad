# Included by _kernels.pyx: the one score evaluator (every score of every
# family is computed here), the checks and setup of a score table, and the
# fused accumulation of a block's sufficient statistics.

from libc.math cimport expm1

# ---------------------------------------------------------------------------
# The one score evaluator: every consumer of a score table (the fused
# accumulators below, _vr's feature kernels, Distribution.score through
# eval_scores) computes scores here.
# ---------------------------------------------------------------------------

cdef inline void _score_term(int kind, const double *x, const double *lx, Py_ssize_t m,
                             double a, double b, double c, double *out) noexcept nogil:
    """out[i] += term of a table kind (not SK_FAMILY) at x[i] (lx: log x, or NULL)."""
    cdef Py_ssize_t i
    cdef double d
    if lx != NULL and (kind == SK_LOG_AFFINE or kind == SK_LOG_QUAD):
        x = lx
        kind = SK_AFFINE if kind == SK_LOG_AFFINE else SK_QUAD
    if kind == SK_AFFINE:
        for i in range(m):
            out[i] += x[i] * a + b
    elif kind == SK_LOG_AFFINE:
        for i in range(m):
            out[i] += log(x[i]) * a + b
    elif kind == SK_LOG1M_AFFINE:
        for i in range(m):
            out[i] += log1p(-x[i]) * a + b
    elif kind == SK_QUAD:
        for i in range(m):
            d = x[i] - c
            out[i] += d * d * a + b
    elif kind == SK_LOG_QUAD:
        for i in range(m):
            d = log(x[i]) - c
            out[i] += d * d * a + b
    elif kind == SK_CATEGORY:
        for i in range(m):
            out[i] += (a if x[i] == c else 0.0) + b
    elif kind == SK_SIGN:
        for i in range(m):
            d = x[i] - c
            out[i] += ((d > 0.0) - (d < 0.0) + (d - d)) * a + b
    elif kind == SK_ABS:
        for i in range(m):
            out[i] += fabs(x[i] - c) * a + b
    elif kind == SK_RECIP:
        for i in range(m):
            out[i] += a / (x[i] - c) + b
    elif kind == SK_EXPM1 or kind == SK_XEXPM1:
        for i in range(m):
            d = x[i] - c
            out[i] += b * (d if kind == SK_XEXPM1 else 1.0) * expm1(a * d)
    elif kind == SK_LOG_EXPM1 or kind == SK_LOG_XEXPM1:
        for i in range(m):
            d = (lx[i] if lx != NULL else log(x[i])) - c
            out[i] += b * (d if kind == SK_LOG_XEXPM1 else 1.0) * expm1(a * d)
    elif kind == SK_RATIO_SQ:
        for i in range(m):
            d = x[i] - c
            out[i] += a * d / (1.0 + b * d * d)
    elif kind == SK_INV_1P_SQ:
        for i in range(m):
            d = x[i] - c
            out[i] += a / (1.0 + b * d * d)
    elif kind == SK_LOG1P_SQ:
        for i in range(m):
            d = x[i] - c
            out[i] += a * log1p(b * d * d)
    elif kind == SK_SIN:
        for i in range(m):
            out[i] += a * sin(x[i] - c) + b
    elif kind == SK_COS:
        for i in range(m):
            out[i] += a * cos(x[i] - c) + b


cdef const double *mc_score_col(const mc_dist *dist, Py_ssize_t q, const double *xt,
                                Py_ssize_t ld, const double *lt, Py_ssize_t m, double *tmp,
                                int *kind, double *abc) noexcept nogil:
    """The score of coordinate q on a chunk, in reduced form (see _kernels.pxd):
    a single affine or quadratic term (in x, or in log x: from the log
    column lt when there is one, else NumPy's log loop into tmp) is returned
    as its column and (a, b, c); anything else is summed term by term into
    tmp (kind MC_SKIND_IDENT)."""
    cdef Py_ssize_t t, t0 = dist.t_start[q], t1 = dist.t_start[q + 1]
    cdef int k
    cdef const double *xc
    cdef const mc_family *fam
    if t1 == t0 + 1:
        k = dist.t_kind[t0]
        abc[0] = dist.t_a[t0]
        abc[1] = dist.t_b[t0]
        abc[2] = dist.t_c[t0]
        xc = xt + dist.t_col[t0] * ld
        if k == SK_AFFINE or k == SK_QUAD:
            kind[0] = MC_SKIND_AFFINE if k == SK_AFFINE else MC_SKIND_QUAD
            return xc
        if k == SK_LOG_AFFINE or k == SK_LOG_QUAD:
            kind[0] = MC_SKIND_AFFINE if k == SK_LOG_AFFINE else MC_SKIND_QUAD
            if lt != NULL:
                return lt + dist.t_col[t0] * ld
            mc_vlog(xc, tmp, m)
            return tmp
    # several terms (a broadcast parameter), or another kind: s in tmp
    kind[0] = MC_SKIND_IDENT
    abc[0] = 0.0
    abc[1] = 0.0
    abc[2] = 0.0
    memset(tmp, 0, sizeof(double) * m)
    for t in range(t0, t1):
        k = dist.t_kind[t]
        if k == SK_FAMILY:
            fam = mc_family_of(dist.family)
            fam.score(dist, t, xt, ld, m, tmp)
        else:
            _score_term(k, xt + dist.t_col[t] * ld,
                        (lt + dist.t_col[t] * ld) if lt != NULL else NULL, m,
                        dist.t_a[t], dist.t_b[t], dist.t_c[t], tmp)
    return tmp


cdef void mc_score_coord(const mc_dist *dist, Py_ssize_t q, const double *xt, Py_ssize_t ld,
                         const double *lt, Py_ssize_t m, double *out) noexcept nogil:
    """out[i] = score of coordinate q at draw i of the chunk (m doubles)."""
    cdef int kind
    cdef double abc[3]
    cdef const double *p = mc_score_col(dist, q, xt, ld, lt, m, out, &kind, abc)
    mc_c_apply(kind, p, m, abc[0], abc[1], abc[2], out)


_SK_NAMES = {SK_AFFINE: "SK_AFFINE", SK_LOG_AFFINE: "SK_LOG_AFFINE",
             SK_LOG1M_AFFINE: "SK_LOG1M_AFFINE", SK_QUAD: "SK_QUAD",
             SK_LOG_QUAD: "SK_LOG_QUAD", SK_CATEGORY: "SK_CATEGORY", SK_SIGN: "SK_SIGN",
             SK_ABS: "SK_ABS", SK_FAMILY: "SK_FAMILY",
             SK_RECIP: "SK_RECIP", SK_EXPM1: "SK_EXPM1", SK_XEXPM1: "SK_XEXPM1",
             SK_LOG_EXPM1: "SK_LOG_EXPM1", SK_LOG_XEXPM1: "SK_LOG_XEXPM1",
             SK_RATIO_SQ: "SK_RATIO_SQ", SK_INV_1P_SQ: "SK_INV_1P_SQ",
             SK_LOG1P_SQ: "SK_LOG1P_SQ", SK_SIN: "SK_SIN", SK_COS: "SK_COS"}


def check_term_kinds(kinds, str owner, family=None):
    """Raise ValueError naming `owner` and the first kind of the score table
    `kinds` that the evaluator does not know (an SK_FAMILY term needs a
    family, given by its code, with its own score kernel)."""
    cdef const mc_family *fam
    k = np.asarray(kinds)
    bad = k[(k < 0) | (k >= SK_N_KINDS)]
    if bad.size:
        raise ValueError(
            f"{owner}: unknown score term kind {int(bad.flat[0])} (the evaluator knows "
            f"{', '.join(f'{n} = {v}' for v, n in sorted(_SK_NAMES.items()))}); "
            "add the kind to the one evaluator (_kernels.pyx) before using it")
    if (k == SK_FAMILY).any():
        fam = mc_family_of(-1 if family is None else family)
        if fam == NULL or fam.score == NULL:
            raise ValueError(
                f"{owner}: an SK_FAMILY score term needs the family's own score kernel "
                "(mc_family.score), and " + ("this table has no family" if fam == NULL
                                             else "the family registers none"))


cdef object mc_set_terms(mc_dist *dist, t_start, t_kind, t_col, t_a, t_b, t_c, str owner):
    cdef int64_t[::1] vts = np.array(t_start, dtype=np.int64, order='C', copy=True).ravel()
    cdef int[::1] vtk = np.array(t_kind, dtype=np.intc, order='C', copy=True).ravel()
    cdef int64_t[::1] vtc = np.array(t_col, dtype=np.int64, order='C', copy=True).ravel()
    cdef double[::1] vta = np.array(t_a, dtype=np.float64, order='C', copy=True).ravel()
    cdef double[::1] vtb = np.array(t_b, dtype=np.float64, order='C', copy=True).ravel()
    cdef double[::1] vtcc = np.array(t_c, dtype=np.float64, order='C', copy=True).ravel()
    check_term_kinds(vtk, owner, dist.family)
    if vts.shape[0] < 1:
        raise ValueError(f"{owner}: the score table's t_start needs n_coords + 1 entries")
    dist.n_coords = vts.shape[0] - 1
    dist.t_start = &vts[0]
    dist.t_kind = &vtk[0] if vtk.shape[0] else NULL
    dist.t_col = &vtc[0] if vtc.shape[0] else NULL
    dist.t_a = &vta[0] if vta.shape[0] else NULL
    dist.t_b = &vtb[0] if vtb.shape[0] else NULL
    dist.t_c = &vtcc[0] if vtcc.shape[0] else NULL
    return (vts, vtk, vtc, vta, vtb, vtcc)


cdef object mc_set_draw(mc_dist *dist, int family, bint per_category, Py_ssize_t n_units,
                        Py_ssize_t n_cat, Py_ssize_t draw_size, p0, p1, alias_q, alias_i):
    if mc_family_of(family) == NULL:
        raise ValueError(f"unknown family code {family} (known: 0..{MC_N_FAMILIES - 1}, see "
                         "mcscore.distributions.FAMILIES)")
    cdef double[:, ::1] blocks = np.zeros((0, 0))
    if n_units > 0:
        blocks = np.ascontiguousarray(np.concatenate(
            [np.asarray(p, dtype=np.float64).reshape(n_units, -1) for p in (p0, p1)], axis=1))
    cdef double[::1] vq = np.array(alias_q, dtype=np.float64, order='C', copy=True).ravel()
    cdef int64_t[::1] vi = np.array(alias_i, dtype=np.int64, order='C', copy=True).ravel()
    dist.family = family
    dist.per_category = per_category
    dist.n_units = n_units
    dist.n_cat = n_cat
    dist.draw_size = draw_size
    dist.prm_len = blocks.shape[1]
    dist.prm = &blocks[0, 0] if blocks.shape[0] and blocks.shape[1] else NULL
    dist.alias_q = &vq[0] if vq.shape[0] else NULL
    dist.alias_i = &vi[0] if vi.shape[0] else NULL
    return (blocks, vq, vi)


def eval_scores(KernelDist dist, x):
    """Per-draw scores of every coordinate on an (m, draw_size) array of
    draws, shape (m, n_coords), computed by the kernels' own evaluator
    (column by column on blocks of draws gathered column-major)."""
    cdef cnp.ndarray[double, ndim=2] xr = np.ascontiguousarray(
        np.asarray(x, dtype=np.float64).reshape(-1, dist.draw_size))
    cdef Py_ssize_t m = xr.shape[0], ds = dist.draw_size, nq = dist.d.n_coords
    cdef Py_ssize_t bs = max(1, mc_chunk_len(ds)), i0, cs, i, k, q
    out_arr = np.empty((nq, m), dtype=np.float64)
    cdef double[:, ::1] out = out_arr
    cdef double[::1] col = np.empty(max(1, bs * ds), dtype=np.float64)
    cdef double[::1] tmp = np.empty(max(1, bs), dtype=np.float64)
    cdef const double *xp = <const double *> cnp.PyArray_DATA(xr)
    if m == 0 or nq == 0:
        return out_arr.T.copy()
    cdef const mc_family *fam = mc_family_of(dist.d.family)
    cdef bint block = fam != NULL and fam.scores != NULL
    cdef double[::1] sc = np.empty(max(1, bs * nq) if block else 1, dtype=np.float64)
    with nogil:
        i0 = 0
        while i0 < m:
            cs = bs if m - i0 > bs else m - i0
            for k in range(ds):
                for i in range(cs):
                    col[k * cs + i] = xp[(i0 + i) * ds + k]
            if block and fam.scores(&dist.d, cs, &col[0], cs, &sc[0]):
                # a vector family's scores of every coordinate at once
                for q in range(nq):
                    for i in range(cs):
                        out[q, i0 + i] = sc[q * cs + i]
                i0 += cs
                continue
            for q in range(nq):
                mc_score_coord(&dist.d, q, &col[0], cs, NULL, cs, &tmp[0])
                for i in range(cs):
                    out[q, i0 + i] = tmp[i]
            i0 += cs
    return np.ascontiguousarray(out_arr.T)


# Two IDENT score columns summed at once: the lanes of mc_c_acc5 for nb <= 8
# draws of a group of 8 (s[k][l]: score k at lane l, g[l]: f - shift), then
# the five sums of each into acc1 and acc2 in mc_c_acc5's order.
cdef extern from *:
    """
    static inline void mc_acc5x2_lanes(double r[10][8], double s[2][8], const double *g,
                                       Py_ssize_t nb) {
        Py_ssize_t l, k;
        for (l = 0; l < nb; l++)
            for (k = 0; k < 2; k++) {
                double v = s[k][l], ss = v * v, gss = g[l] * ss;
                r[5 * k][l] += v; r[5 * k + 1][l] += ss; r[5 * k + 2][l] += g[l] * v;
                r[5 * k + 3][l] += gss; r[5 * k + 4][l] += g[l] * gss;
            }
    }
    static inline void mc_acc5x2_end(double r[10][8], double *acc1, double *acc2) {
        int k;
        for (k = 0; k < 5; k++) {
            acc1[k] += mc_red8(r[k]);
            acc2[k] += mc_red8(r[5 + k]);
        }
    }
    """


# ---------------------------------------------------------------------------
# Gumbel's two scores from the kept exponentials in one pass (the exp-column
# path of mc_accum_chunk): loc's b1 (E - 1) and scale's b2 (x - c) (E - 1)
# plus its constant row a3 x' + b3 (x' its own column), by the same
# expressions as mc_exp_column_acc5 and _score_term and the same lanes as
# mc_c_acc5 (IDENT): the same bits, one read of x, E and f instead of two.
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    MC_CLONES
    static void mc_c_acc5_gumbel(const double *x, const double *xa, const double *e,
                                 const double *fx, Py_ssize_t cs, double shift, double b1,
                                 double b2, double c, double a3, double b3, double *acc1,
                                 double *acc2) {
        double r[10][8], s[2][8], g[8];
        Py_ssize_t i0, l, nb;
        memset(r, 0, sizeof r);
        for (i0 = 0; i0 < cs; i0 += 8) {
            nb = cs - i0 < 8 ? cs - i0 : 8;
            for (l = 0; l < nb; l++) {
                double em = e[i0 + l] - 1.0;
                s[0][l] = 0.0 + b1 * em;
                s[1][l] = (0.0 + b2 * (x[i0 + l] - c) * em) + (xa[i0 + l] * a3 + b3);
                g[l] = fx[i0 + l] - shift;
            }
            mc_acc5x2_lanes(r, s, g, nb);
        }
        mc_acc5x2_end(r, acc1, acc2);
    }
    """
    void mc_c_acc5_gumbel(const double *x, const double *xa, const double *e, const double *fx,
                          Py_ssize_t cs, double shift, double b1, double b2, double c,
                          double a3, double b3, double *acc1, double *acc2) noexcept nogil


cdef bint mc_gumbel_exp_pairs(const mc_dist *dist, Py_ssize_t m, const double *xt,
                              Py_ssize_t ld, const double *lt, const double *fx, double shift,
                              double *stats) noexcept nogil:
    """The exp-column statistics of a Gumbel table whose coordinates q < h
    (loc's elements: one SK_EXPM1 term) pair with q + h (scale's: SK_XEXPM1
    on the same column with the same a and c, then SK_AFFINE), each pair in
    one pass; False (mc_exp_column_acc5 coordinate by coordinate) for any
    other table.  mc_exp_column_ok must hold."""
    cdef Py_ssize_t q, t1, t2, h = dist.n_coords // 2
    if dist.family != MC_GUMBEL or dist.n_coords != 2 * h:
        return False
    for q in range(h):
        t1 = dist.t_start[q]
        t2 = dist.t_start[q + h]
        if (dist.t_start[q + 1] != t1 + 1 or dist.t_start[q + h + 1] != t2 + 2
                or dist.t_kind[t1] != SK_EXPM1 or dist.t_kind[t2] != SK_XEXPM1
                or dist.t_kind[t2 + 1] != SK_AFFINE or dist.t_col[t1] != dist.t_col[t2]
                or not (dist.t_c[t1] == dist.t_c[t2] and dist.t_a[t1] == dist.t_a[t2])):
            return False
    for q in range(h):
        t1 = dist.t_start[q]
        t2 = dist.t_start[q + h]
        mc_c_acc5_gumbel(xt + dist.t_col[t2] * ld, xt + dist.t_col[t2 + 1] * ld,
                         lt + dist.t_col[t1] * ld, fx, m, shift, dist.t_b[t1], dist.t_b[t2],
                         dist.t_c[t2], dist.t_a[t2 + 1], dist.t_b[t2 + 1], stats + 5 * q,
                         stats + 5 * (q + h))
    return True


cdef void mc_accum_chunk(const mc_dist *dist, Py_ssize_t m, const double *xt, Py_ssize_t ld,
                         const double *lt, const double *fx, double shift, double *stats,
                         double *tmp) noexcept nogil:
    """Add the sufficient statistics of one chunk of m draws to a stream's row.

    xt: column-major draws, xt[c * ld + i]; lt: the log column of LogNormal
    draws (same layout) or NULL; fx: m finite f values; tmp: m doubles.
    The sums run in 8 fixed lanes (see mc_c_acc5): the result depends on the
    chunk's values only.
    """
    cdef Py_ssize_t i, q, j, K = dist.n_cat
    cdef int kind
    cdef double g
    cdef double abc[3]
    cdef double *acc
    cdef const double *xc
    cdef const mc_family *fam
    stats[0] += m
    mc_c_gsum(fx, m, shift, stats + 1)
    if dist.per_category:
        for j in range(dist.n_units):
            xc = xt + j * ld
            acc = stats + 3 + 3 * K * j
            for i in range(m):
                q = <Py_ssize_t> xc[i]
                g = fx[i] - shift
                acc[3 * q] += 1.0
                acc[3 * q + 1] += g
                acc[3 * q + 2] += g * g
        return
    if mc_has_exp_column(dist):
        # Gumbel, Weibull: lt holds the draws' standard exponentials
        if lt != NULL and mc_exp_column_ok(dist):
            if mc_gumbel_exp_pairs(dist, m, xt, ld, lt, fx, shift, stats + 3):
                return
            for q in range(dist.n_coords):
                mc_exp_column_acc5(dist, q, m, xt, ld, lt, fx, shift, stats + 3 + 5 * q, tmp)
            return
        lt = NULL
    fam = mc_family_of(dist.family)
    if fam != NULL and fam.accum != NULL and fam.accum(dist, m, xt, ld, fx, shift, stats + 3):
        return  # a vector family's statistics of every coordinate at once
    for q in range(dist.n_coords):
        xc = mc_score_col(dist, q, xt, ld, lt, m, tmp, &kind, abc)
        mc_c_acc5(kind, xc, fx, m, shift, abc[0], abc[1], abc[2], stats + 3 + 5 * q)


cdef void mc_accum_chunk_batched(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                 Py_ssize_t ld, const double *lt, const double *fx,
                                 Py_ssize_t fld, Py_ssize_t nf, const int64_t *fcol,
                                 const double *shift, double *stats,
                                 double *tmp) noexcept nogil:
    """mc_accum_chunk for batched expectations: f has nf columns (column k at
    fx + k * fld, shift[k]); coordinate q (unit q of a per-category family)
    is accumulated with column fcol[q].  Row layout: [count, (sum g_k, sum
    g_k^2) per column, then the per-coordinate (per-category) sums]."""
    cdef Py_ssize_t i, q, j, k, K = dist.n_cat
    cdef int kind
    cdef double g, sh
    cdef double abc[3]
    cdef double *acc
    cdef double *base = stats + 1 + 2 * nf
    cdef const double *xc
    cdef const double *fc
    stats[0] += m
    for k in range(nf):
        mc_c_gsum(fx + k * fld, m, shift[k], stats + 1 + 2 * k)
    if dist.per_category:
        for j in range(dist.n_units):
            xc = xt + j * ld
            fc = fx + fcol[j] * fld
            sh = shift[fcol[j]]
            acc = base + 3 * K * j
            for i in range(m):
                q = <Py_ssize_t> xc[i]
                g = fc[i] - sh
                acc[3 * q] += 1.0
                acc[3 * q + 1] += g
                acc[3 * q + 2] += g * g
        return
    if mc_has_exp_column(dist):
        # Gumbel, Weibull: lt holds the draws' standard exponentials
        if lt != NULL and mc_exp_column_ok(dist):
            for q in range(dist.n_coords):
                mc_exp_column_acc5(dist, q, m, xt, ld, lt, fx + fcol[q] * fld, shift[fcol[q]],
                                   base + 5 * q, tmp)
            return
        lt = NULL
    for q in range(dist.n_coords):
        xc = mc_score_col(dist, q, xt, ld, lt, m, tmp, &kind, abc)
        mc_c_acc5(kind, xc, fx + fcol[q] * fld, m, shift[fcol[q]], abc[0], abc[1], abc[2],
                  base + 5 * q)


# returned by the block functions below when the driver said stop
cdef enum:
    MC_STOPPED = -2


cdef Py_ssize_t _accumulate_block(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                  const double *lt, const double *fx, double shift,
                                  double *stats, double *tmp, mc_round *rd,
                                  int tid) noexcept nogil:
    """mc_accumulate_block_lt that polls the driver (rd, or NULL) after every
    chunk: -1, the index of a non-finite f value, or MC_STOPPED."""
    cdef Py_ssize_t i0, cs, bad, c = mc_chunk_len(dist.draw_size)
    bad = mc_c_first_nonfinite(fx, m)
    if bad >= 0:
        return bad
    i0 = 0
    while i0 < m:
        cs = c if m - i0 > c else m - i0
        mc_accum_chunk(dist, cs, xt + i0, m, (lt + i0) if lt != NULL else NULL, fx + i0,
                       shift, stats, tmp)
        i0 += cs
        if rd != NULL and i0 < m and mc_poll(rd, tid):
            return MC_STOPPED
    return -1


cdef Py_ssize_t mc_accumulate_block_lt(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                       const double *lt, const double *fx, double shift,
                                       double *stats, double *tmp) noexcept nogil:
    """mc_accumulate_block with the LogNormal log column lt (or NULL): the
    block is accumulated chunk by chunk, exactly as the fused kernels do."""
    return _accumulate_block(dist, m, xt, lt, fx, shift, stats, tmp, NULL, 0)


cdef Py_ssize_t mc_accumulate_block(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                    const double *fx, double shift, double *stats,
                                    double *tmp) noexcept nogil:
    """Add a block's sufficient statistics to one stream's row `stats`.

    tmp must hold m doubles.  Returns -1, or the index of the first draw
    whose f value is not finite (nothing is accumulated then).  (LogNormal
    scores are computed from log x here; the kernels use the exact log column
    of their draws, see mc_accumulate_block_lt.)
    """
    return mc_accumulate_block_lt(dist, m, xt, NULL, fx, shift, stats, tmp)


cdef Py_ssize_t _run_block(const mc_dist *dist, const mc_func *func, bitgen_t *bg,
                           Py_ssize_t m, double *stats, double *shift, bint first,
                           mc_workspace *ws, mc_round *rd, int tid) noexcept nogil:
    """mc_run_block that polls the driver (rd, or NULL) after every chunk:
    -1, the index of the failing draw, or MC_STOPPED."""
    cdef Py_ssize_t i0, cs, bad, c = mc_chunk_len(dist.draw_size)
    cdef double *lt = ws.lt if mc_has_log_column(dist) else NULL
    i0 = 0
    while i0 < m:
        cs = c if m - i0 > c else m - i0
        mc_draw_chunk(dist, bg, cs, ws.xt, cs, lt, ws)
        bad = mc_eval_block(func, dist, cs, ws.xt, ws.fx, ws)
        if bad < 0:
            bad = mc_c_first_nonfinite(ws.fx, cs)
        if bad >= 0:
            ws.fx[0] = ws.fx[bad]
            return i0 + bad
        if first and i0 == 0:
            shift[0] = ws.fx[0]
        mc_accum_chunk(dist, cs, ws.xt, cs, lt, ws.fx, shift[0], stats, ws.tmp)
        i0 += cs
        if rd != NULL and i0 < m and mc_poll(rd, tid):
            return MC_STOPPED
    return -1


cdef Py_ssize_t mc_run_block(const mc_dist *dist, const mc_func *func, bitgen_t *bg,
                             Py_ssize_t m, double *stats, double *shift, bint first,
                             mc_workspace *ws) noexcept nogil:
    """Draw, evaluate and accumulate one block of a stream, chunk by chunk
    (each chunk's draws stay in cache).

    `first` marks the stream's first block: its first f value becomes the
    stream's shift.  Returns -1, or the index of the failing draw; then
    ws.fx[0] holds the failing f value.
    """
    return _run_block(dist, func, bg, m, stats, shift, first, ws, NULL, 0)


# ---------------------------------------------------------------------------
# A score accumulator (mc_family.accum) for score tables whose coordinates
# share a transcendental: Gumbel's loc and scale scores both hold
# expm1(a (x - c)), Weibull's both expm1(a (log x - c)).  Each coordinate's
# score is computed exactly as mc_score_col computes it (the same terms, in
# the same order, by the same functions) and summed by mc_c_acc5, so the
# statistics are the same bits, with each shared d = x - c (or log x - c)
# and expm1(a d) computed once per draw instead of once per coordinate.
# It runs where the draws' standard exponentials are not kept (an
# accumulation without the lt column); with them, mc_exp_column_acc5 below.
# ---------------------------------------------------------------------------

cdef enum:
    _SH_MEMO = 8        # shared columns kept per chunk


cdef inline bint _sh_kind(int k) noexcept nogil:
    return k == SK_EXPM1 or k == SK_XEXPM1 or k == SK_LOG_EXPM1 or k == SK_LOG_XEXPM1


cdef bint mc_accum_shared_expm1(const mc_dist *dist, Py_ssize_t m, const double *xt,
                                Py_ssize_t ld, const double *fx, double shift,
                                double *stats) noexcept nogil:
    """Add the five score sums of every coordinate of a chunk to stats (the
    per-coordinate part of a stream's row); False (nothing done) when out
    of memory (the caller then goes coordinate by coordinate)."""
    cdef Py_ssize_t nq = dist.n_coords, q, t, i, k, slot, nm = 0, ns = 0
    cdef int kind
    cdef bint islog
    cdef double a, b, c, tb
    cdef double abc[3]
    cdef const double *xc
    cdef const double *y
    cdef double *buf
    cdef double *sb
    cdef double *e
    cdef double *d
    cdef Py_ssize_t mcol[_SH_MEMO]
    cdef double ma[_SH_MEMO]
    cdef double mcc[_SH_MEMO]
    cdef bint mlog[_SH_MEMO]
    if m <= 0:
        return True
    for t in range(dist.t_start[nq]):
        ns += _sh_kind(dist.t_kind[t])
    ns = (ns if ns < _SH_MEMO else _SH_MEMO) + 1  # memo slots, and one scratch slot
    buf = <double *> malloc(sizeof(double) * m * (1 + 2 * ns))
    if buf == NULL:
        return False
    sb = buf
    for q in range(nq):
        if dist.t_start[q + 1] == dist.t_start[q] + 1 and not _sh_kind(
                dist.t_kind[dist.t_start[q]]):
            # one term of another kind: mc_accum_chunk's own path
            y = mc_score_col(dist, q, xt, ld, NULL, m, sb, &kind, abc)
            mc_c_acc5(kind, y, fx, m, shift, abc[0], abc[1], abc[2], stats + 5 * q)
            continue
        memset(sb, 0, sizeof(double) * m)
        for t in range(dist.t_start[q], dist.t_start[q + 1]):
            kind = dist.t_kind[t]
            xc = xt + dist.t_col[t] * ld
            a = dist.t_a[t]
            b = dist.t_b[t]
            c = dist.t_c[t]
            if not _sh_kind(kind):
                _score_term(kind, xc, NULL, m, a, b, c, sb)
                continue
            islog = kind == SK_LOG_EXPM1 or kind == SK_LOG_XEXPM1
            slot = -1
            for k in range(nm):
                if mcol[k] == dist.t_col[t] and ma[k] == a and mcc[k] == c and mlog[k] == islog:
                    slot = k
                    break
            if slot < 0:
                slot = ns - 1  # the scratch slot, unless a memo slot is free
                if nm < ns - 1:
                    slot = nm
                    mcol[nm] = dist.t_col[t]
                    ma[nm] = a
                    mcc[nm] = c
                    mlog[nm] = islog
                    nm += 1
                d = buf + m * (1 + 2 * slot)
                e = d + m
                # the evaluator's d and expm1(a d) (_score_term)
                for i in range(m):
                    d[i] = (log(xc[i]) if islog else xc[i]) - c
                    e[i] = expm1(a * d[i])
            d = buf + m * (1 + 2 * slot)
            e = d + m
            if kind == SK_XEXPM1 or kind == SK_LOG_XEXPM1:
                for i in range(m):
                    sb[i] += b * d[i] * e[i]
            else:
                tb = b * 1.0
                for i in range(m):
                    sb[i] += tb * e[i]
        mc_c_acc5(MC_SKIND_IDENT, sb, fx, m, shift, 0.0, 0.0, 0.0, stats + 5 * q)
    free(buf)
    return True


_FAMILY_TABLE[MC_GUMBEL].accum = mc_accum_shared_expm1
_FAMILY_TABLE[MC_WEIBULL].accum = mc_accum_shared_expm1


# ---------------------------------------------------------------------------
# Gumbel and Weibull scores from each draw's standard exponential E, kept by
# the fill in the log column buffer lt (mc_has_exp_column), as LogNormal
# keeps log x: with z = (x - loc) / scale a Gumbel draw has exp(-z) = E, a
# Weibull draw (x / scale)^k = E and log(x / scale) = log(E) / k, so the
# table's expm1(a (x - c)) and expm1(a (log x - c)) are E - 1, and the
# scores need no transcendental call (Weibull's concentration: one log).
# The values are those of the table's terms (the same b, d and expm1), up
# to the last bits: E - 1 is taken from the exact draw instead of being
# recomputed from the rounded x.
# ---------------------------------------------------------------------------

cdef enum:
    _EXP_LOG_BLOCK = 256    # logs of the kept column per call of NumPy's log loop


cdef bint mc_exp_column_ok(const mc_dist *dist) noexcept nogil:
    """True when every exp-kind term of the table is its unit's own
    (Gumbel: a = -1 / scale, c = loc; Weibull: a = k, c = log scale), so
    its expm1 is E - 1 of the kept column."""
    cdef Py_ssize_t t
    cdef int kind
    cdef const double *p
    cdef double lc
    for t in range(dist.t_start[dist.n_coords]):
        kind = dist.t_kind[t]
        if not _sh_kind(kind):
            continue
        if dist.t_col[t] < 0 or dist.t_col[t] >= dist.n_units:
            return False
        p = mc_unit_params(dist, dist.t_col[t])
        if dist.family == MC_GUMBEL:
            if not ((kind == SK_EXPM1 or kind == SK_XEXPM1)
                    and dist.t_a[t] == -1.0 / p[1] and dist.t_c[t] == p[0]):
                return False
        else:
            lc = log(p[0])
            if not ((kind == SK_LOG_EXPM1 or kind == SK_LOG_XEXPM1) and dist.t_a[t] == p[1]
                    and p[1] != 0.0 and fabs(dist.t_c[t] - lc) <= 4.5e-16 * fabs(lc)):
                return False
    return True


cdef void mc_exp_column_acc5(const mc_dist *dist, Py_ssize_t q, Py_ssize_t m,
                             const double *xt, Py_ssize_t ld, const double *lt,
                             const double *fx, double shift, double *stats,
                             double *tmp) noexcept nogil:
    """Add the five score sums of coordinate q on a chunk to stats (its
    five slots), the exp-kind terms computed from the kept column lt
    (mc_exp_column_ok must hold); tmp: m doubles."""
    cdef Py_ssize_t t, i, i0, nb, t0 = dist.t_start[q], t1 = dist.t_start[q + 1]
    cdef int kind
    cdef double a, b, c
    cdef double abc[3]
    cdef double lb[_EXP_LOG_BLOCK]
    cdef const double *xc
    cdef const double *e
    cdef const double *y
    if t1 == t0 + 1 and not _sh_kind(dist.t_kind[t0]):
        # one term of another kind: mc_accum_chunk's own path
        y = mc_score_col(dist, q, xt, ld, NULL, m, tmp, &kind, abc)
        mc_c_acc5(kind, y, fx, m, shift, abc[0], abc[1], abc[2], stats)
        return
    memset(tmp, 0, sizeof(double) * m)
    for t in range(t0, t1):
        kind = dist.t_kind[t]
        xc = xt + dist.t_col[t] * ld
        e = lt + dist.t_col[t] * ld
        a = dist.t_a[t]
        b = dist.t_b[t]
        c = dist.t_c[t]
        if kind == SK_EXPM1 or kind == SK_LOG_EXPM1:
            for i in range(m):
                tmp[i] += b * (e[i] - 1.0)
        elif kind == SK_XEXPM1:
            for i in range(m):
                tmp[i] += b * (xc[i] - c) * (e[i] - 1.0)
        elif kind == SK_LOG_XEXPM1:
            # log(x / scale) = log(E) / k, the logs by NumPy's log loop
            i0 = 0
            while i0 < m:
                nb = m - i0 if m - i0 < _EXP_LOG_BLOCK else _EXP_LOG_BLOCK
                mc_vlog(e + i0, lb, nb)
                for i in range(nb):
                    tmp[i0 + i] += b * (lb[i] / a) * (e[i0 + i] - 1.0)
                i0 += nb
        else:
            _score_term(kind, xc, NULL, m, a, b, c, tmp)
    mc_c_acc5(MC_SKIND_IDENT, tmp, fx, m, shift, 0.0, 0.0, 0.0, stats)


# ---------------------------------------------------------------------------
# Laplace's two scores of a column in one pass: loc's a1 sign(x - c) + b1
# and scale's a2 |x - c| + b2 (the same c) are computed from the one read
# of x and f and summed together, by the same expressions as _score_term
# (added to a zeroed buffer) and the same lanes as mc_c_acc5 (IDENT), so
# the statistics are the same bits as the coordinate-by-coordinate path's.
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    MC_CLONES
    static void mc_c_acc5_sign_abs(const double *x, const double *fx, Py_ssize_t cs,
                                   double shift, double a1, double b1, double a2, double b2,
                                   double c, double *acc1, double *acc2) {
        double r[10][8], s[2][8], g[8];
        Py_ssize_t i0, l, nb;
        memset(r, 0, sizeof r);
        for (i0 = 0; i0 < cs; i0 += 8) {
            nb = cs - i0 < 8 ? cs - i0 : 8;
            for (l = 0; l < nb; l++) {
                double d = x[i0 + l] - c;
                s[0][l] = 0.0 + (((double)((d > 0.0) - (d < 0.0)) + (d - d)) * a1 + b1);
                s[1][l] = 0.0 + (fabs(x[i0 + l] - c) * a2 + b2);
                g[l] = fx[i0 + l] - shift;
            }
            mc_acc5x2_lanes(r, s, g, nb);
        }
        mc_acc5x2_end(r, acc1, acc2);
    }
    """
    void mc_c_acc5_sign_abs(const double *x, const double *fx, Py_ssize_t cs, double shift,
                            double a1, double b1, double a2, double b2, double c,
                            double *acc1, double *acc2) noexcept nogil


cdef bint mc_accum_laplace(const mc_dist *dist, Py_ssize_t m, const double *xt,
                           Py_ssize_t ld, const double *fx, double shift,
                           double *stats) noexcept nogil:
    """mc_family.accum of Laplace: coordinates q < h = n_coords / 2 (loc's
    elements, one SK_SIGN term each) with their partners q + h (scale's, one
    SK_ABS term on the same column and c) summed in one pass; False (the
    per-coordinate path) for any other table."""
    cdef Py_ssize_t q, t1, t2, h = dist.n_coords // 2
    if dist.n_coords != 2 * h:
        return False
    for q in range(h):
        t1 = dist.t_start[q]
        t2 = dist.t_start[q + h]
        if (dist.t_start[q + 1] != t1 + 1 or dist.t_start[q + h + 1] != t2 + 1
                or dist.t_kind[t1] != SK_SIGN or dist.t_kind[t2] != SK_ABS
                or dist.t_col[t1] != dist.t_col[t2] or not (dist.t_c[t1] == dist.t_c[t2])):
            return False
    for q in range(h):
        t1 = dist.t_start[q]
        t2 = dist.t_start[q + h]
        mc_c_acc5_sign_abs(xt + dist.t_col[t1] * ld, fx, m, shift, dist.t_a[t1], dist.t_b[t1],
                           dist.t_a[t2], dist.t_b[t2], dist.t_c[t1], stats + 5 * q,
                           stats + 5 * (q + h))
    return True


_FAMILY_TABLE[MC_LAPLACE].accum = mc_accum_laplace


# ---------------------------------------------------------------------------
# VonMises: the loc score a sin(x - c) + b and the concentration score
# a' cos(x - c) + b' of a unit read the same d = x - c.  Its accumulator
# (mc_family.accum) takes both in one pass, sin(d) and cos(d) side by side
# (one sincos call where the compiler pairs them), each term as
# mc_score_col's (0 + (a sin(d) + b), then mc_c_acc5), so the statistics
# are the same bits.  It is used when the pairing gives sin's and cos's own
# values (checked at import, _vm_pair_check).  (The draw's w, cos(d) before
# the rounding of acos and of the wrapping, would spare both calls, but it
# and sqrt(1 - w^2) are then the score of the unrounded angle: up to 25
# times the error of sin(x - c), cos(x - c) at the draw x itself, measured
# against a long-double reference; not used.)
# ---------------------------------------------------------------------------

cdef bint _vm_pair_ok = False


cdef inline void _vm_pair(const double *x, Py_ssize_t m, double c, double a1, double b1,
                          double a2, double b2, double *s, double *co) noexcept nogil:
    """s[i] = 0 + (a1 sin(d) + b1), co[i] = 0 + (a2 cos(d) + b2), d = x[i] - c."""
    cdef Py_ssize_t i
    cdef double d
    for i in range(m):
        d = x[i] - c
        s[i] = 0.0 + (a1 * sin(d) + b1)
        co[i] = 0.0 + (a2 * cos(d) + b2)


cdef bint mc_accum_von_mises(const mc_dist *dist, Py_ssize_t m, const double *xt,
                             Py_ssize_t ld, const double *fx, double shift,
                             double *stats) noexcept nogil:
    """Add the five score sums of every coordinate of a chunk to stats when
    the table is the family's own (2 B coordinates: q < B one SK_SIN term,
    q + B one SK_COS term on the same column and c); False (nothing done)
    otherwise, or for a chunk above MC_CHUNK_MAX draws."""
    cdef Py_ssize_t nq = dist.n_coords, B = dist.n_coords // 2, q, t1, t2
    cdef double sb[MC_CHUNK_MAX]
    cdef double cb[MC_CHUNK_MAX]
    if not _vm_pair_ok or m > MC_CHUNK_MAX or m <= 0 or nq == 0 or nq != 2 * B:
        return False
    for q in range(B):
        t1 = dist.t_start[q]
        t2 = dist.t_start[q + B]
        if (dist.t_start[q + 1] != t1 + 1 or dist.t_start[q + B + 1] != t2 + 1
                or dist.t_kind[t1] != SK_SIN or dist.t_kind[t2] != SK_COS
                or dist.t_col[t1] != dist.t_col[t2] or dist.t_c[t1] != dist.t_c[t2]):
            return False
    for q in range(B):
        t1 = dist.t_start[q]
        t2 = dist.t_start[q + B]
        _vm_pair(xt + dist.t_col[t1] * ld, m, dist.t_c[t1], dist.t_a[t1], dist.t_b[t1],
                 dist.t_a[t2], dist.t_b[t2], sb, cb)
        mc_c_acc5(MC_SKIND_IDENT, sb, fx, m, shift, 0.0, 0.0, 0.0, stats + 5 * q)
        mc_c_acc5(MC_SKIND_IDENT, cb, fx, m, shift, 0.0, 0.0, 0.0, stats + 5 * (q + B))
    return True


def _vm_pair_check(bint on=True):
    """Use the paired VonMises score pass (True when, on angles over the
    whole of [-2 pi, 2 pi] and beyond, it gives the bits of the terms'
    own sin and cos, _score_term) or the terms one by one."""
    global _vm_pair_ok
    _vm_pair_ok = False
    if not on:
        return False
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-7.0, 7.0, 4000), rng.normal(0.0, 1e-3, 1000),
                        np.linspace(-3.2, 3.2, 1001), [0.0, -0.0, 1e-300, 40.0, -1e3]])
    cdef double[::1] xv = x
    cdef Py_ssize_t m = x.shape[0]
    cdef double[::1] s1 = np.empty(m), c1 = np.empty(m), s2 = np.zeros(m), c2 = np.zeros(m)
    for c, a1, b1, a2, b2 in ((0.0, 1.0, 0.0, 1.0, 0.0), (0.75, 2.5, 0.0, 1.0, -0.6),
                              (-3.0, 1e4, 0.0, 1.0, -0.99995)):
        _vm_pair(&xv[0], m, c, a1, b1, a2, b2, &s1[0], &c1[0])
        s2[:] = 0.0
        c2[:] = 0.0
        _score_term(SK_SIN, &xv[0], NULL, m, a1, b1, c, &s2[0])
        _score_term(SK_COS, &xv[0], NULL, m, a2, b2, c, &c2[0])
        if not (np.array_equal(np.asarray(s1).view(np.uint64), np.asarray(s2).view(np.uint64))
                and np.array_equal(np.asarray(c1).view(np.uint64),
                                   np.asarray(c2).view(np.uint64))):
            return False
    _vm_pair_ok = True
    return True


VM_PAIRED_SCORES = _vm_pair_check(True)
_FAMILY_TABLE[MC_VON_MISES].accum = mc_accum_von_mises
