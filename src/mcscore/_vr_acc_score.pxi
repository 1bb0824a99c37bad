# Included by _vr.pyx: features and Gram accumulation of the score-function
# estimators (acc_score: baselines, control variates, antithetic pairs, RLOO)
# and of the pathwise estimator (acc_pathwise).

# ---------------------------------------------------------------------------
# features + accumulation, one function per estimator
# ---------------------------------------------------------------------------

cdef bint _scores(const mc_dist *tab, const double *xt, Py_ssize_t m, double *out,
                  mc_round *rd, int tid) noexcept nogil:
    """out[q * m + i] = score coordinate q at draw i, by the core's one score
    evaluator (mc_score_coord).  Polls the driver (rd, thread tid) per
    coordinate: True when it stopped."""
    cdef Py_ssize_t q
    cdef const mc_family *fam = mc_family_of(tab.family)
    if fam != NULL and fam.scores != NULL and fam.scores(tab, m, xt, m, out):
        return mc_poll(rd, tid)  # a vector family's scores of every coordinate at once
    for q in range(tab.n_coords):
        if mc_poll(rd, tid):
            return True
        mc_score_coord(tab, q, xt, m, NULL, m, out + q * m)
    return False


cdef void _pair_means(double *a, const double *b, Py_ssize_t m) noexcept nogil:
    """a[i] <- (a[i] + b[i]) / 2 for an antithetic pair's terms, snapped to 0
    where they cancel to rounding level relative to the block's typical
    magnitude: a term that is odd under the mirror then gives a feature
    that is exactly 0, not rounding noise that a fitted coefficient could
    amplify.  The values of f arrive with their offset taken out (see the
    module docstring), so the block's magnitude is that of f's spread, and a
    genuine pair mean is never this small relative to it."""
    cdef Py_ssize_t i
    cdef double scale = 0.0, t
    for i in range(m):
        scale += fabs(a[i]) + fabs(b[i])
    scale = 1e-11 * scale / m if m > 0 else 0.0
    for i in range(m):
        t = a[i] + b[i]
        a[i] = 0.0 if fabs(t) <= scale else 0.5 * t


cdef int _cb_score(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                   int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t P = c.P, J = c.J, L = c.L, B = rd.block_size, group = c.group
    cdef Py_ssize_t mg, i, q, l, g, k, base = r * B
    cdef bint antithetic = c.antithetic, add_score = c.add_score
    cdef double *S1 = c.buf + tid * c.buf_len
    cdef double *S2 = S1 + (P * B + 1)
    cdef double *Z = S2 + (P * B + 1)
    cdef double *v = Z + (P * L * B + 1)
    cdef double *v2 = v + (B + 1)
    cdef const double *F = c.F            # F[l, j] is F[l * fl + j]
    cdef const double *F2 = c.F2
    cdef Py_ssize_t fl = c.F_ld, fl2 = c.F2_ld
    cdef double *stats = c.stats + rd.slots[r] * c.stats_ld
    cdef double *shifts = c.shifts + rd.slots[r] * c.shifts_ld
    cdef bint first = blk < rd.n_streams
    cdef double fbar
    cdef const double *Fq
    if _scores(&c.tab, c.x + r * c.x_ld, m, S1, rd, tid):
        return 1
    if antithetic and _scores(&c.tab, c.x2 + r * c.x2_ld, m, S2, rd, tid):
        return 1
    if group > 1:
        mg = m // group
        for g in range(mg):
            if _stop(rd, tid, g):
                return 1
            fbar = 0.0
            for k in range(group):
                fbar = fbar + F[base + g * group + k]
            fbar = fbar / group
            v[g] = fbar
            for q in range(P):
                Z[q * mg + g] = 0.0
                if c.frow != NULL:  # batched: coordinate q's own column of f
                    Fq = F + c.frow[q] * fl
                    fbar = 0.0
                    for k in range(group):
                        fbar = fbar + Fq[base + g * group + k]
                    fbar = fbar / group
                else:
                    Fq = F
                for k in range(group):
                    Z[q * mg + g] += ((Fq[base + g * group + k] - fbar)
                                      * S1[q * m + g * group + k])
                Z[q * mg + g] = Z[q * mg + g] / (group - 1)
        return gram_add(Z, P, 1, mg, v, stats, shifts, first, rd, tid)
    else:
        for i in range(m):
            v[i] = F[base + i] if not antithetic else 0.5 * (
                F[base + i] + F2[base + i])
        for q in range(P):
            for l in range(J):
                if mc_poll(rd, tid):
                    return 1
                if antithetic:
                    for i in range(m):
                        Z[(q * L + l) * m + i] = F[l * fl + base + i] * S1[q * m + i]
                        v2[i] = F2[l * fl2 + base + i] * S2[q * m + i]
                    _pair_means(&Z[(q * L + l) * m], v2, m)
                else:
                    for i in range(m):
                        Z[(q * L + l) * m + i] = F[l * fl + base + i] * S1[q * m + i]
            if add_score:
                if antithetic:
                    for i in range(m):
                        Z[(q * L + J) * m + i] = S1[q * m + i]
                        v2[i] = S2[q * m + i]
                    _pair_means(&Z[(q * L + J) * m], v2, m)
                else:
                    for i in range(m):
                        Z[(q * L + J) * m + i] = S1[q * m + i]
        return gram_add(Z, P, L, m, v, stats, shifts, first, rd, tid)


def acc_score(int64_t[::1] ts, int[::1] tk, int64_t[::1] tc, double[::1] ta, double[::1] tb,
              double[::1] tcc, int64_t[::1] blocks, int64_t[::1] slots, int64_t n,
              int64_t block_size, int64_t n_streams, int n_threads, Py_ssize_t ds,
              double[:, ::1] xt, double[:, ::1] xt2, double[:, ::1] F, double[:, ::1] F2,
              bint antithetic, bint add_score, Py_ssize_t group,
              double[:, ::1] stats, double[:, ::1] shifts, int64_t[::1] frow=None,
              kd=None):
    """Score-function features: per coordinate q, z_l = F_l * s_q (l < J) and,
    with add_score, z_J = s_q (the baseline's control variate).

    antithetic: each draw i is paired with the draw xt2 (values F2); the
    features are the pair's averages.  group > 1: leave-one-out groups of
    `group` consecutive draws, z_0 = 1/(k-1) sum_i (F_0i - mean F_0) s_qi
    (only J = 1, no antithetic); with frow (batched expectations), coordinate
    q's groups use row frow[q] of F (the value feature stays row 0's mean).

    kd: the family's KernelDist, for a table with SK_FAMILY terms (a
    family's own score kernel reads the family code and parameter blocks).
    """
    cdef _vr_t c = _context()
    cdef Py_ssize_t P = ts.shape[0] - 1, B = block_size
    c.tab.family = -1
    cdef const mc_dist *src
    if kd is not None:
        src = mc_kernel_dist_ptr(kd)
        c.tab.family = src.family
        c.tab.n_units = src.n_units
        c.tab.draw_size = src.draw_size
        c.tab.prm = src.prm
        c.tab.prm_len = src.prm_len
    keep = mc_set_terms(&c.tab, ts, tk, tc, ta, tb, tcc, "acc_score's score table")
    c.P = P
    c.J = F.shape[0] if frow is None else 1
    c.L = c.J + (1 if add_score else 0)
    if c.L > MAXL:
        raise ValueError(f"at most {MAXL} features per coordinate")
    c.ds = ds
    c.antithetic = antithetic
    c.add_score = add_score
    c.group = group
    if frow is not None:
        if group < 2 or frow.shape[0] != P or (P and (np.min(frow) < 0
                                                     or np.max(frow) >= F.shape[0])):
            raise ValueError(f"frow must hold {P} rows of F in [0, {F.shape[0]}) (groups only)")
        c.frow = &frow[0] if P else NULL
    _arrays(&c, xt, F, None, stats, shifts, xt2, F2)
    _round(&c, _cb_score, None, blocks, slots, n, block_size, n_streams, n_threads,
           2 * (P * B + 1) + (P * c.L * B + 1) + 2 * (B + 1))


cdef inline double _tangent(int kind, double x, double aux0, double aux1, double a,
                            double b) noexcept nogil:
    if kind == TK_ONE:
        return 1.0
    if kind == TK_NSCALE:
        return (x - a) / b
    if kind == TK_LNLOC:
        return x
    if kind == TK_LNSCALE:
        return x * (log(x) - a) / b
    if kind == TK_NEG_X_OVER:
        return -x / a
    if kind == TK_GAMMA_CONC:
        return dgamma_dalpha(x * b, a) / b
    if kind == TK_AUX0:
        return aux0
    if kind == TK_AUX1:
        return aux1
    return 0.0


cdef int _cb_pathwise(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                      int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t P = c.P, ds = c.ds, gl = c.G_ld
    cdef Py_ssize_t i, q, t, col, j, k, K, k0, base = r * rd.block_size
    cdef bint has_aux = c.has_aux
    cdef double *Z = c.buf + tid * c.buf_len
    cdef const double *G = c.G            # G[j, col] is G[j * gl + col]
    cdef const double *x = c.x + r * c.x_ld
    cdef const int64_t *ts = c.ts
    cdef const int *tk = c.tk
    cdef const int64_t *tc = c.tc
    cdef const double *ta = c.ta
    cdef const double *tb = c.tb
    cdef double acc, a0, a1
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        for q in range(P):
            acc = 0.0
            for t in range(ts[q], ts[q + 1]):
                col = tc[t]
                if tk[t] == TK_DIRICHLET:
                    # a = first column of the unit, b = K
                    j = <Py_ssize_t> ta[t]
                    K = <Py_ssize_t> tb[t]
                    a0 = 0.0
                    for k in range(K):
                        a0 = a0 + G[(base + i) * gl + j + k] * x[(j + k) * m + i]
                    acc = acc + x[ds * m + col * m + i] * (G[(base + i) * gl + col] - a0)
                elif tk[t] == TK_MVN_NOISE:
                    # dx_i / dL_ij = eps_j, recovered from x by row j of L^-1
                    j = <Py_ssize_t> ta[t]
                    k0 = <Py_ssize_t> tb[t]
                    K = <Py_ssize_t> c.prm[0]
                    a0 = 0.0
                    for k in range(j + 1):
                        a0 = a0 + c.prm[1 + j * K + k] * (x[(k0 + k) * m + i]
                                                          - c.prm[1 + K * K + k0 + k])
                    acc = acc + G[(base + i) * gl + col] * a0
                else:
                    a0 = x[ds * m + col * m + i] if has_aux else 0.0
                    a1 = x[2 * ds * m + col * m + i] if has_aux else 0.0
                    acc = acc + G[(base + i) * gl + col] * _tangent(
                        tk[t], x[col * m + i], a0, a1, ta[t], tb[t])
            Z[q * m + i] = acc
    return gram_add(Z, P, 1, m, &c.fv[base], c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


def acc_pathwise(int64_t[::1] ts, int[::1] tk, int64_t[::1] tc, double[::1] ta,
                 double[::1] tb, int64_t[::1] blocks, int64_t[::1] slots, int64_t n,
                 int64_t block_size, int64_t n_streams, int n_threads, Py_ssize_t ds,
                 bint has_aux, double[:, ::1] xb, double[:, ::1] G, double[::1] fv,
                 double[:, ::1] stats, double[:, ::1] shifts, double[::1] prm=None):
    """Pathwise features z_q = sum over the terms t of q of
    grad_f[col_t] * dx_col / dtheta_q (tangent kind tk[t]).

    xb rows hold x (ds * m) and, with has_aux, aux0 and aux1 (ds * m each);
    G[r * B + i, c] is grad_f at draw i of block r, fv[r * B + i] is f.
    prm: the parameters of the tangent kinds that read them (TK_MVN_NOISE).
    """
    cdef _vr_t c = _context()
    _table(&c, ts, tk, tc, ta, tb, None)
    c.ds = ds
    c.has_aux = has_aux
    c.fv = _vec(fv)
    c.prm = _vec(prm)
    if (np.asarray(tk) == TK_MVN_NOISE).any() and c.prm == NULL:
        raise ValueError("acc_pathwise: TK_MVN_NOISE tangents need prm")
    _arrays(&c, xb, None, G, stats, shifts)
    _round(&c, _cb_pathwise, None, blocks, slots, n, block_size, n_streams, n_threads,
           c.P * block_size + 1)
