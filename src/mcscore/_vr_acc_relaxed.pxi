# Included by _vr.pyx: features and Gram accumulation of the estimators of
# discrete families through relaxations (acc_relaxed, acc_rebar) and of
# DisARM (acc_disarm).

cdef inline void _to_params(double *y, Py_ssize_t m, Py_ssize_t i, Py_ssize_t W,
                            Py_ssize_t K, int conv, const double *cv,
                            const double *cvs) noexcept nogil:
    """Convert a logit-space gradient y[c * m + i] (c < W) to the user's
    parameters: conv 0 = logits (nothing), 1 = Bernoulli probs (times cv[c]
    = 1 / (p (1 - p))), 2 = Categorical probs (y_k / p_k - sum_j y_j / sum p,
    cv = 1 / p, cvs = 1 / sum p per unit)."""
    cdef Py_ssize_t c, j, k
    cdef double s
    if conv == 1:
        for c in range(W):
            y[c * m + i] = y[c * m + i] * cv[c]
    elif conv == 2:
        for j in range(W // K):
            s = 0.0
            for k in range(K):
                s = s + y[(j * K + k) * m + i]
            for k in range(K):
                y[(j * K + k) * m + i] = y[(j * K + k) * m + i] * cv[j * K + k] - s * cvs[j]


cdef int _cb_relaxed(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                     int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t W = c.W, K = c.K, gl = c.G_ld
    cdef Py_ssize_t i, col, j, k, base = r * rd.block_size
    cdef double tau = c.tau
    cdef double *Z = c.buf + tid * c.buf_len
    cdef const double *G = c.G            # G[j, col] is G[j * gl + col]
    cdef const double *x = c.x + r * c.x_ld
    cdef double z, dot
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        if K == 1:
            for col in range(W):
                z = x[col * m + i]
                Z[col * m + i] = G[(base + i) * gl + col] * z * (1.0 - z) / tau
        else:
            for j in range(W // K):
                dot = 0.0
                for k in range(K):
                    dot = dot + G[(base + i) * gl + j * K + k] * x[(j * K + k) * m + i]
                for k in range(K):
                    Z[(j * K + k) * m + i] = (x[(j * K + k) * m + i]
                                              * (G[(base + i) * gl + j * K + k] - dot) / tau)
        _to_params(Z, m, i, W, K, c.conv, c.cv, c.cvs)
    return gram_add(Z, W, 1, m, &c.fv[base], c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


def acc_relaxed(int64_t[::1] blocks, int64_t[::1] slots, int64_t n, int64_t block_size,
                int64_t n_streams, int n_threads, Py_ssize_t W, Py_ssize_t K, double tau,
                int conv, const double[::1] cv, const double[::1] cvs,
                double[:, ::1] zb, double[:, ::1] G, double[::1] fv,
                double[:, ::1] stats, double[:, ::1] shifts):
    """Relaxed (Gumbel-softmax / Concrete) pathwise features.  K == 1:
    Bernoulli, dz/dlogit = z (1 - z) / tau; K > 1: Categorical,
    d z_k / d logit_j = z_k (delta_kj - z_j) / tau.  zb rows hold the relaxed
    z (W * m); G the gradient of f (at z, or at the hard sample for the
    straight-through variant)."""
    cdef _vr_t c = _context()
    c.W = W
    c.K = K
    c.tau = tau
    c.conv = conv
    c.cv = _vec(cv)
    c.cvs = _vec(cvs)
    c.fv = _vec(fv)
    _arrays(&c, zb, None, G, stats, shifts)
    _round(&c, _cb_relaxed, None, blocks, slots, n, block_size, n_streams, n_threads,
           W * block_size + 1)


cdef int _cb_rebar(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                   int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t W = c.W, K = c.K, L = c.L, gl = c.G_ld, gl2 = c.G2_ld, fl = c.F_ld
    cdef Py_ssize_t i, col, j, k, base = r * rd.block_size
    cdef double lam = c.tau
    cdef bint add_score = c.add_score
    cdef double *Z = c.buf + tid * c.buf_len
    cdef double *T = Z + (W * L * rd.block_size + 1)
    cdef const double *Gz = c.G           # Gz[j, col] is Gz[j * gl + col]
    cdef const double *Gzt = c.G2
    cdef const double *F = c.F            # F[l, j] is F[l * fl + j]
    cdef const double *probs = c.probs
    cdef const double *x = c.x + r * c.x_ld
    cdef double sc, sz, szt, a, dot, dott, wsum
    # T: score (0), d f(s(z)) (1), d f(s(z~)) (2), in logit space
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        if K == 1:
            for col in range(W):
                sz = x[W * m + col * m + i]
                szt = x[2 * W * m + col * m + i]
                T[col * m + i] = x[col * m + i] - probs[col]
                T[W * m + col * m + i] = Gz[(base + i) * gl + col] * sz * (1.0 - sz) / lam
                T[2 * W * m + col * m + i] = (Gzt[(base + i) * gl2 + col] * szt * (1.0 - szt)
                                              / lam * x[3 * W * m + col * m + i])
        else:
            for j in range(W // K):
                dot = 0.0
                dott = 0.0
                for k in range(K):
                    col = j * K + k
                    dot = dot + Gz[(base + i) * gl + col] * x[W * m + col * m + i]
                    dott = dott + Gzt[(base + i) * gl2 + col] * x[2 * W * m + col * m + i]
                wsum = 0.0
                for k in range(K):
                    col = j * K + k
                    T[col * m + i] = x[col * m + i] - probs[col]
                    T[W * m + col * m + i] = (x[W * m + col * m + i]
                                              * (Gz[(base + i) * gl + col] - dot) / lam)
                    a = (x[2 * W * m + col * m + i] * (Gzt[(base + i) * gl2 + col] - dott) / lam
                         * x[3 * W * m + col * m + i])
                    T[2 * W * m + col * m + i] = a
                    wsum = wsum + a
                for k in range(K):
                    col = j * K + k
                    T[2 * W * m + col * m + i] -= probs[col] * wsum
        _to_params(T, m, i, W, K, c.conv, c.cv, c.cvs)
        _to_params(T + W * m, m, i, W, K, c.conv, c.cv, c.cvs)
        _to_params(T + 2 * W * m, m, i, W, K, c.conv, c.cv, c.cvs)
        for col in range(W):
            sc = T[col * m + i]
            Z[(col * L) * m + i] = F[base + i] * sc
            Z[(col * L + 1) * m + i] = (-F[2 * fl + base + i] * sc + T[W * m + col * m + i]
                                        - T[2 * W * m + col * m + i])
            if add_score:
                Z[(col * L + 2) * m + i] = sc
    return gram_add(Z, W, L, m, &F[base], c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


def acc_rebar(int64_t[::1] blocks, int64_t[::1] slots, int64_t n, int64_t block_size,
              int64_t n_streams, int n_threads, Py_ssize_t W, Py_ssize_t K, double lam,
              const double[::1] probs, int conv, const double[::1] cv, const double[::1] cvs,
              bint add_score, double[:, ::1] buf, double[:, ::1] F, double[:, ::1] Gz,
              double[:, ::1] Gzt, double[:, ::1] stats, double[:, ::1] shifts):
    """REBAR features per coordinate: z_0 = f(b) s (REINFORCE),
    z_1 = -f(s(z~)) s + d/dtheta f(s(z)) - d/dtheta f(s(z~)) (the relaxed
    control variate, mean 0; the estimator is z_0 + eta z_1) and, with
    add_score, z_2 = s.  buf rows: b | s(z) | s(z~) | tangent factor (W * m
    each); F rows: f(b), f(s(z)), f(s(z~)); Gz, Gzt: grad_f at s(z), s(z~).
    probs: the normalised probabilities (W)."""
    cdef _vr_t c = _context()
    c.W = W
    c.K = K
    c.L = 3 if add_score else 2
    c.tau = lam
    c.probs = _vec(probs)
    c.conv = conv
    c.cv = _vec(cv)
    c.cvs = _vec(cvs)
    c.add_score = add_score
    _arrays(&c, buf, F, Gz, stats, shifts, None, None, Gzt)
    _round(&c, _cb_rebar, None, blocks, slots, n, block_size, n_streams, n_threads,
           (W * c.L * block_size + 1) + (3 * W * block_size + 1))


cdef int _cb_disarm(void *ctx, mc_round *rd, Py_ssize_t r, int64_t blk, Py_ssize_t m,
                    int tid) noexcept nogil:
    cdef _vr_t *c = <_vr_t *> ctx
    cdef Py_ssize_t W = c.W, fl = c.F_ld
    cdef Py_ssize_t i, col, base = r * rd.block_size
    cdef double *Z = c.buf + tid * c.buf_len
    cdef double *v = Z + (W * rd.block_size + 1)
    cdef const double *F = c.F            # F[l, j] is F[l * fl + j]
    cdef const double *logits = c.probs
    cdef const double *x = c.x + r * c.x_ld
    cdef double d, bt
    for i in range(m):
        if _stop(rd, tid, i):
            return 1
        d = 0.5 * (F[base + i] - F[fl + base + i])
        v[i] = 0.5 * (F[base + i] + F[fl + base + i])
        for col in range(W):
            bt = x[W * m + col * m + i]
            if x[col * m + i] == bt:
                Z[col * m + i] = 0.0
            else:
                Z[col * m + i] = ((-d if bt > 0 else d) * _sigmoid(fabs(logits[col]))
                                  * (c.cv[col] if c.conv == 1 else 1.0))
    return gram_add(Z, W, 1, m, v, c.stats + rd.slots[r] * c.stats_ld,
                    c.shifts + rd.slots[r] * c.shifts_ld, blk < rd.n_streams, rd, tid)


def acc_disarm(int64_t[::1] blocks, int64_t[::1] slots, int64_t n, int64_t block_size,
               int64_t n_streams, int n_threads, Py_ssize_t W, const double[::1] logits,
               int conv, const double[::1] cv, double[:, ::1] buf, double[:, ::1] F,
               double[:, ::1] stats, double[:, ::1] shifts):
    """DisARM features: z_c = 1/2 (f(b) - f(b~)) (-1)^b~_c [b_c != b~_c]
    sigma(|logit_c|); value 1/2 (f(b) + f(b~)).  buf rows: b | b~."""
    cdef _vr_t c = _context()
    c.W = W
    c.probs = _vec(logits)     # the logits (DisARM has no probabilities)
    c.conv = conv
    c.cv = _vec(cv)
    _arrays(&c, buf, F, None, stats, shifts)
    _round(&c, _cb_disarm, None, blocks, slots, n, block_size, n_streams, n_threads,
           (W * block_size + 1) + (block_size + 1))
