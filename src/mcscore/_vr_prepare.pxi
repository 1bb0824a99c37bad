# Included by _vr.pyx (one extension, one C file): prepare_round's per-block
# work, the PREP_* modes (the family's own draws, gamma variates, relaxed /
# REBAR / DisARM noise) that build the points f and grad_f are evaluated at.

# ---------------------------------------------------------------------------
# prepare: draw a round of blocks and build the points f is evaluated at
# ---------------------------------------------------------------------------

cdef bint _prepare_block(int mode, const mc_dist *dist, bitgen_t *bg, Py_ssize_t m,
                         Py_ssize_t W, const double *prm, double *out, double *scratch,
                         mc_workspace *ws, mc_round *rd, int tid) noexcept nogil:
    """Fill `out` for one block (see the PREP_* modes); polls the driver (rd,
    thread tid) as it goes: True when it stopped early."""
    cdef Py_ssize_t i, c, j, k, K, U, best
    cdef double tau, t, u, v, p, e, eb, mx, tot, z, vp, a, b, g1, g2, s
    cdef double *u1
    cdef double *u2
    cdef const double *pj
    if mode == PREP_DRAW:
        return mc_draw_block_polled(dist, bg, m, out, NULL, ws, rd, tid)
    elif mode == PREP_GAMMAS:
        K = dist.n_cat
        # Beta (K == 1): draw_size = units, unit block [c1, c0].
        # Dirichlet: draw_size = units * K, unit block [concentration (K), 0].
        for j in range(dist.n_units):
            pj = mc_unit_params(dist, j)
            if K == 1:
                a = pj[0]
                b = pj[1]
                for i in range(m):
                    if _stop(rd, tid, i):
                        return True
                    g1 = random_standard_gamma(bg, a)
                    g2 = random_standard_gamma(bg, b)
                    s = g1 + g2
                    z = g1 / s
                    out[j * m + i] = z
                    out[W * m + j * m + i] = (1.0 - z) / s * dgamma_dalpha(g1, a)
                    out[2 * W * m + j * m + i] = -z / s * dgamma_dalpha(g2, b)
            else:
                for i in range(m):
                    if _stop(rd, tid, i):
                        return True
                    s = 0.0
                    for k in range(K):
                        g1 = random_standard_gamma(bg, pj[k])
                        out[(j * K + k) * m + i] = g1
                        s = s + g1
                    for k in range(K):
                        g1 = out[(j * K + k) * m + i]
                        out[(j * K + k) * m + i] = g1 / s
                        out[W * m + (j * K + k) * m + i] = (
                            dgamma_dalpha(g1, pj[k]) / s)
                        out[2 * W * m + (j * K + k) * m + i] = 0.0
        return False
    # the other modes start from uniforms in scratch: W*m of them (REBAR:
    # 2*W*m, u1 then u2), drawn before anything else of the block
    if _fill_uniform(bg, (2 if mode == PREP_REBAR_BERN or mode == PREP_REBAR_CAT else 1) * W * m,
                     scratch, rd, tid):
        return True
    if mode == PREP_RELAXED_BERN:
        tau = prm[0]
        for c in range(W):
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
                t = (prm[1 + c] + _logit(scratch[c * m + i])) / tau
                out[c * m + i] = _sigmoid(t)
                out[W * m + c * m + i] = 1.0 if t > 0 else 0.0
    elif mode == PREP_RELAXED_CAT:
        tau = prm[0]
        K = dist.n_cat
        U = W // K
        for j in range(U):
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
                best = _gumbel_argmax(prm + 1 + j * K, scratch + j * K * m,
                                      out + j * K * m, K, m, i, tau, &mx)
                tot = 0.0
                for k in range(K):
                    e = exp(out[(j * K + k) * m + i] - mx)
                    out[(j * K + k) * m + i] = e
                    tot = tot + e
                for k in range(K):
                    out[(j * K + k) * m + i] = out[(j * K + k) * m + i] / tot
                    out[W * m + (j * K + k) * m + i] = 1.0 if k == best else 0.0
    elif mode == PREP_REBAR_BERN:
        tau = prm[0]
        u1 = scratch
        u2 = scratch + W * m
        for c in range(W):
            p = _sigmoid(prm[1 + c])
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
                u = u1[c * m + i]
                v = u2[c * m + i]
                t = prm[1 + c] + _logit(u)
                b = 1.0 if t > 0 else 0.0
                # z~ ~ p(z | b): u' uniform on the part of (0, 1) that gives b
                if b > 0:
                    vp = (1.0 - p) + v * p
                    a = 1.0 - (1.0 - v) * p * (1.0 - p) / (vp * (1.0 - vp))
                else:
                    vp = v * (1.0 - p)
                    a = 1.0 - v * p * (1.0 - p) / (vp * (1.0 - vp))
                z = prm[1 + c] + _logit(vp)
                out[c * m + i] = b
                out[W * m + c * m + i] = _sigmoid(t / tau)
                out[2 * W * m + c * m + i] = _sigmoid(z / tau)
                out[3 * W * m + c * m + i] = a if isfinite(a) else 0.0
    elif mode == PREP_REBAR_CAT:
        tau = prm[0]
        K = dist.n_cat
        U = W // K
        u1 = scratch
        u2 = scratch + W * m
        for j in range(U):
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
                # z = log pi + Gumbel, b = argmax z (z / 1.0 is z exactly)
                best = _gumbel_argmax(prm + 1 + j * K, u1 + j * K * m,
                                      out + W * m + j * K * m, K, m, i, 1.0, &mx)
                _softmax_col(out + W * m + j * K * m, K, m, i, tau)
                # z~ ~ p(z | b): the max is Gumbel(0), the others truncated below it
                eb = -log(u2[(j * K + best) * m + i])
                mx = -INFINITY
                for k in range(K):
                    out[(j * K + k) * m + i] = 1.0 if k == best else 0.0
                    if k == best:
                        t = -log(eb)
                        out[3 * W * m + (j * K + k) * m + i] = 0.0
                    else:
                        p = exp(prm[1 + j * K + k])
                        e = -log(u2[(j * K + k) * m + i]) / p
                        t = -log(e + eb)
                        # a probability that underflowed to 0 (logits +-700):
                        # e = inf, z~_k = -inf, and e / (e + eb) -> 1
                        out[3 * W * m + (j * K + k) * m + i] = (e / (e + eb) if isfinite(e)
                                                                else 1.0)
                    out[2 * W * m + (j * K + k) * m + i] = t
                _softmax_col(out + 2 * W * m + j * K * m, K, m, i, tau)
    elif mode == PREP_DISARM:
        for c in range(W):
            p = _sigmoid(prm[c])
            for i in range(m):
                if _stop(rd, tid, i):
                    return True
                u = scratch[c * m + i]
                out[c * m + i] = 1.0 if u < p else 0.0
                out[W * m + c * m + i] = 1.0 if (1.0 - u) < p else 0.0
    return False


cdef inline Py_ssize_t _gumbel_argmax(const double *logits, const double *u, double *z,
                                      Py_ssize_t K, Py_ssize_t m, Py_ssize_t i, double tau,
                                      double *mx) noexcept nogil:
    """z[k * m + i] <- (logits[k] + Gumbel noise -log(-log u[k * m + i])) / tau
    for k < K; returns the first k of the largest, and that value in *mx
    (-inf when none is larger than -inf)."""
    cdef Py_ssize_t k, best = 0
    cdef double t
    mx[0] = -INFINITY
    for k in range(K):
        t = (logits[k] - log(-log(u[k * m + i]))) / tau
        z[k * m + i] = t
        if t > mx[0]:
            mx[0] = t
            best = k
    return best


cdef inline void _softmax_col(double *col, Py_ssize_t K, Py_ssize_t m, Py_ssize_t i,
                              double tau) noexcept nogil:
    """col[k * m + i] <- softmax_k(col[. * m + i] / tau)."""
    cdef Py_ssize_t k
    cdef double mx = -INFINITY, tot = 0.0, e
    for k in range(K):
        if col[k * m + i] > mx:
            mx = col[k * m + i]
    for k in range(K):
        e = exp((col[k * m + i] - mx) / tau)
        col[k * m + i] = e
        tot = tot + e
    for k in range(K):
        col[k * m + i] = col[k * m + i] / tot
