# Included by _kernels.pyx: f as the kernels evaluate it, a fused integrand
# (IK_* terms), a C callback (CB_* signatures) or values computed in Python.

cdef inline double _integrand_term_scalar(int kind, double x, const double *p) noexcept nogil:
    if kind == IK_INDICATOR:
        return 1.0 if (x >= p[0] and x <= p[1]) else 0.0
    if kind == IK_CALL:
        return x - p[0] if x > p[0] else 0.0
    if kind == IK_PUT:
        return p[0] - x if x < p[0] else 0.0
    if kind == IK_DIGITAL_CALL:
        return 1.0 if x > p[0] else 0.0
    if kind == IK_DIGITAL_PUT:
        return 1.0 if x < p[0] else 0.0
    return 0.0


cdef void mc_eval_integrand(const mc_integrand *F, Py_ssize_t ds, Py_ssize_t m,
                            const double *xt, double *fx) noexcept nogil:
    """fx[i] = F(draw i) for a column-major block."""
    cdef Py_ssize_t t, i, c, r, k, deg
    cdef int kind
    cdef double coef, w, v, acc
    cdef double lbuf[256]
    cdef const double *p
    cdef const double *x
    cdef const double *xr
    for i in range(m):
        fx[i] = F.constant
    for t in range(F.n_terms):
        kind = <int> F.kind[t]
        coef = F.coef[t]
        p = F.params + F.off[t]
        if kind == IK_POLY:
            deg = <Py_ssize_t> p[0]
            mc_c_poly(xt + F.col[t] * m, m, p + 1, deg, coef, fx)
        elif kind == IK_LINEAR:
            for c in range(ds):
                w = coef * p[c]
                if w != 0.0:
                    x = xt + c * m
                    for i in range(m):
                        fx[i] += w * x[i]
        elif kind == IK_QUAD_DIAG:
            for c in range(ds):
                w = coef * p[ds + c]
                if w != 0.0:
                    x = xt + c * m
                    v = p[c]
                    for i in range(m):
                        fx[i] += w * (x[i] - v) * (x[i] - v)
        elif kind == IK_QUAD_FULL:
            for i in range(m):
                acc = 0.0
                for r in range(ds):
                    v = 0.0
                    for c in range(ds):
                        v += p[ds + r * ds + c] * (xt[c * m + i] - p[c])
                    acc += (xt[r * m + i] - p[r]) * v
                fx[i] += coef * acc
        elif kind == IK_SIN or kind == IK_COS or kind == IK_EXP or kind == IK_LOG1P:
            for c in range(ds):
                w = coef * p[c]
                if w == 0.0:
                    continue
                x = xt + c * m
                if kind == IK_SIN:
                    for i in range(m):
                        fx[i] += w * sin(x[i])
                elif kind == IK_COS:
                    for i in range(m):
                        fx[i] += w * cos(x[i])
                elif kind == IK_EXP:
                    for i in range(m):
                        fx[i] += w * exp(x[i])
                else:
                    i = 0
                    while i < m:
                        k = m - i if m - i < 256 else 256
                        mc_vlog1p(x + i, lbuf, k)
                        for r in range(k):
                            fx[i + r] += w * lbuf[r]
                        i += k
        elif kind == IK_CALL:
            # max(x - K, 0) written so that the loop vectorises: x - K > 0
            # exactly when x > K (gradual underflow), the same value.
            x = xt + F.col[t] * m
            v = p[0]
            for i in range(m):
                acc = x[i] - v
                fx[i] += coef * (acc if acc > 0.0 else 0.0)
        elif kind == IK_PUT:
            x = xt + F.col[t] * m
            v = p[0]
            for i in range(m):
                acc = v - x[i]
                fx[i] += coef * (acc if acc > 0.0 else 0.0)
        else:
            x = xt + F.col[t] * m
            for i in range(m):
                fx[i] += coef * _integrand_term_scalar(kind, x[i], p)


cdef Py_ssize_t mc_eval_callback(const mc_func *F, Py_ssize_t ds, Py_ssize_t m,
                                 const double *xt, double *row, double *fx) noexcept nogil:
    """Call a C function on each draw.  Returns -1, or the index of the first
    draw for which the callback signalled an error (non-zero return)."""
    cdef Py_ssize_t i, c
    cdef int rc
    cdef int sig = F.sig
    for i in range(m):
        for c in range(ds):
            row[c] = xt[c * m + i]
        if sig == CB_D_P_N:
            fx[i] = (<mc_cb_d_p_n> F.fptr)(row, <intptr_t> ds)
        elif sig == CB_D_P_N_V:
            fx[i] = (<mc_cb_d_p_n_v> F.fptr)(row, <intptr_t> ds, F.user_data)
        elif sig == CB_D_P_I:
            fx[i] = (<mc_cb_d_p_i> F.fptr)(row, <int> ds)
        elif sig == CB_D_P_I_V:
            fx[i] = (<mc_cb_d_p_i_v> F.fptr)(row, <int> ds, F.user_data)
        elif sig == CB_I_P_N_P_V:
            rc = (<mc_cb_i_p_n_p_v> F.fptr)(row, <intptr_t> ds, &fx[i], F.user_data)
            if rc != 0:
                return i
        else:
            rc = (<mc_cb_i_p_i_p_v> F.fptr)(row, <int> ds, &fx[i], F.user_data)
            if rc != 0:
                return i
    return -1


cdef Py_ssize_t mc_eval_block(const mc_func *func, const mc_dist *dist, Py_ssize_t m,
                              const double *xt, double *fx, mc_workspace *ws) noexcept nogil:
    """Evaluate f on a block.  Returns -1 or the index of a failing draw."""
    if func.kind == FK_INTEGRAND:
        mc_eval_integrand(func.integ, dist.draw_size, m, xt, fx)
        return -1
    if func.kind == FK_CALLBACK:
        return mc_eval_callback(func, dist.draw_size, m, xt, ws.row, fx)
    return -1
