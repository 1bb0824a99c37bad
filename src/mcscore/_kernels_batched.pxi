# Included by _kernels.pyx (after the driver callbacks): the kernels of
# batched expectations with a Python f (score_grad with batch_ndims > 0).
#
# The draws of a round are handed to f in its own layout, (m, draw_size) rows
# (in the user's dtype: int64 for a Categorical), by one transposing pass
# (gather_round); f's values come back as rows (m, nf), one column per batch
# element, and are accumulated from that layout (accumulate_rows_batched):
# no transposed copy of f's values.  The sums are those of
# accumulate_round_batched operation for operation (the same chunks, lanes
# and order per accumulator), so the results are bit-identical to it, for
# any thread count: a block is processed by one thread, into its stream's
# row only.

from libc.stdint cimport int32_t


cdef extern from *:
    double mc_red8(const double *r) noexcept nogil   # _kernels_vmath.pxi's lane sum


ctypedef struct _bctx_t:
    const mc_dist *dist
    const double *xt         # the round's draws: block r at xt + r * ld (column-major)
    const double *lt         # ... log columns (LogNormal), or NULL
    Py_ssize_t ld
    const Py_ssize_t *off    # the round's row of block r's first draw
    const double **rowp      # gather_round: NULL; accumulate: f's row of round row i
    void *out                # gather_round: the (total, draw_size) output rows
    int out_int              # ... 1: int64, 0: double
    double *stats
    Py_ssize_t sld
    double *shifts           # nf per stream slot
    const int64_t *fcol
    Py_ssize_t nf
    double *tmp              # per thread: tmp_len doubles
    Py_ssize_t tmp_len
    int32_t *cats            # a Categorical drawn as rows: its categories, (total, units)


# columns of the transposing copy per tile (a tile's source lines stay in L1)
cdef enum:
    MC_GATHER_TILE = 256
    MC_UNIT_TILE = 64


cdef int _cb_gather(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                    int tid) noexcept nogil:
    """Block b (row r of the round's draws, draw_size columns of m values)
    into the output rows off[r] .. off[r] + m - 1."""
    cdef _bctx_t *c = <_bctx_t *> ctx
    cdef Py_ssize_t ds = c.dist.draw_size, i, k, k0, k1
    cdef const double *x = c.xt + r * c.ld
    cdef double *od
    cdef int64_t *oi
    k0 = 0
    while k0 < ds:
        k1 = ds if ds - k0 < MC_GATHER_TILE else k0 + MC_GATHER_TILE
        if c.out_int:
            for i in range(m):
                oi = (<int64_t *> c.out) + (c.off[r] + i) * ds
                for k in range(k0, k1):
                    oi[k] = <int64_t> x[k * m + i]
        else:
            for i in range(m):
                od = (<double *> c.out) + (c.off[r] + i) * ds
                for k in range(k0, k1):
                    od[k] = x[k * m + i]
        k0 = k1
        if k1 < ds and mc_poll(rd, tid):
            return 1
    return 0


cdef Py_ssize_t[::1] _row_offsets(int64_t[::1] blocks, int64_t n, int64_t block_size):
    """The round's row of each block's first draw (blocks laid one after the other)."""
    cdef Py_ssize_t R = blocks.shape[0], r, o = 0
    cdef Py_ssize_t[::1] off = np.empty(max(R, 1), dtype=np.intp)
    for r in range(R):
        off[r] = o
        o += min(block_size, n - blocks[r] * block_size)
    return off


def gather_round(KernelDist dist, int64_t[::1] blocks, int64_t n, int64_t block_size,
                 int n_threads, double[:, ::1] xt, out):
    """The drawn blocks of a round (row r of xt: block blocks[r], column-major,
    as draw_round writes it) as rows: out[o + i] = draw i of block r, o the
    rows of the blocks before it.  out: a C-contiguous (>= total, draw_size)
    float64 or int64 array (int64: the draws converted as astype does)."""
    cdef Py_ssize_t R = blocks.shape[0]
    cdef Py_ssize_t[::1] off = _row_offsets(blocks, n, block_size)
    cdef cnp.ndarray o = out
    cdef mc_round rd
    cdef _bctx_t c
    if o.ndim != 2 or not o.flags.c_contiguous or o.shape[1] != dist.draw_size or \
            o.dtype not in (np.float64, np.int64):
        raise ValueError("out must be a C-contiguous float64 or int64 array of draw_size columns")
    if R == 0:
        return
    if o.shape[0] < off[R - 1] + min(block_size, n - blocks[R - 1] * block_size):
        raise ValueError("out has fewer rows than the round's draws")
    memset(&c, 0, sizeof(_bctx_t))
    c.dist = &dist.d
    c.xt = _rows_ptr(xt)
    c.ld = xt.shape[1]
    c.off = &off[0]
    c.out = cnp.PyArray_DATA(o)
    c.out_int = o.dtype == np.int64
    mc_round_init(&rd, n, 0, block_size, n_threads, R, &blocks[0], NULL, None)
    try:
        mc_drive(&rd, _cb_gather, &c)
    finally:
        mc_round_free(&rd)


cdef void _category_rows_chunk(const mc_dist *dist, Py_ssize_t cs, const double *xt,
                               Py_ssize_t ld, const int32_t *cr, const double **rows,
                               Py_ssize_t nf,
                               const int64_t *fcol, const double *sh, double *stats,
                               double *tmp) noexcept nogil:
    """mc_accum_chunk_batched of a per-category family on a chunk of f's rows
    (rows[i]: the nf values of draw i), the same sums bit for bit: f's column
    sums in 8 lanes (draw i in lane i % 8, lanes from +0.0, reduced by
    mc_red8, as mc_c_gsum), and each (unit, category) sum in draw order.
    Draw by draw over the units, so that consecutive updates go to
    different accumulators.  The categories: cr[i * units + j] (rows, from
    draw_categorical_rows) or, with cr NULL, xt[j * ld + i].  tmp: (16 + cs)
    nf doubles."""
    cdef Py_ssize_t i, j, j0, j1, k, l, q, K = dist.n_cat, U = dist.n_units
    cdef double g
    cdef double *lg = tmp             # lane sums of g: lane l of column k at l * nf + k
    cdef double *lh = tmp + 8 * nf    # ... of g^2
    cdef double *gm = tmp + 16 * nf   # g of draw i, column k at i * nf + k
    cdef double *base = stats + 1 + 2 * nf
    cdef double *acc
    cdef double r[8]
    cdef const double *row
    cdef const double *gi
    memset(tmp, 0, sizeof(double) * 16 * nf)
    stats[0] += cs
    for i in range(cs):
        row = rows[i]
        gi = gm + i * nf
        l = (i & 7) * nf
        for k in range(nf):
            g = row[k] - sh[k]
            gm[i * nf + k] = g
            lg[l + k] += g
            lh[l + k] += g * g
    # the units in tiles whose accumulators and draws stay in L1
    j0 = 0
    while j0 < U:
        j1 = U if U - j0 < MC_UNIT_TILE else j0 + MC_UNIT_TILE
        for i in range(cs):
            gi = gm + i * nf
            for j in range(j0, j1):
                q = cr[i * U + j] if cr != NULL else <Py_ssize_t> xt[j * ld + i]
                g = gi[fcol[j]]
                acc = base + 3 * (K * j + q)
                acc[0] += 1.0
                acc[1] += g
                acc[2] += g * g
        j0 = j1
    for k in range(nf):
        for l in range(8):
            r[l] = lg[l * nf + k]
        stats[1 + 2 * k] += mc_red8(r)
        for l in range(8):
            r[l] = lh[l * nf + k]
        stats[2 + 2 * k] += mc_red8(r)


cdef int _cb_accumulate_rows(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b,
                             Py_ssize_t m, int tid) noexcept nogil:
    """_cb_accumulate_batched on f's rows: each chunk's nf columns copied
    from the rows (c.rowp) into the thread's buffer, then the same chunk
    function (mc_accum_chunk_batched) on them."""
    cdef _bctx_t *c = <_bctx_t *> ctx
    cdef Py_ssize_t s = rd.slots[r], k, i, i0, cs, nf = c.nf
    cdef Py_ssize_t ch = mc_chunk_len(c.dist.draw_size)
    cdef const double **rows = c.rowp + c.off[r]
    cdef const double *xt = c.xt + r * c.ld
    cdef const double *lt = (c.lt + r * c.ld) if c.lt != NULL else NULL
    cdef double *sh = c.shifts + s * nf
    cdef double *cols = c.tmp + tid * c.tmp_len
    cdef double *work = cols + nf * (ch if ch < rd.block_size else rd.block_size)
    cdef const double *row
    if b < rd.n_streams:
        for k in range(nf):
            sh[k] = rows[0][k]
    i0 = 0
    while i0 < m:
        cs = ch if m - i0 > ch else m - i0
        if c.dist.per_category:
            _category_rows_chunk(c.dist, cs, xt + i0, m,
                                 (c.cats + (c.off[r] + i0) * c.dist.n_units)
                                 if c.cats != NULL else NULL, rows + i0, nf, c.fcol, sh,
                                 c.stats + s * c.sld, cols)
            i0 += cs
            if i0 < m and mc_poll(rd, tid):
                return 1
            continue
        for i in range(cs):
            row = rows[i0 + i]
            for k in range(nf):
                cols[k * cs + i] = row[k]
        mc_accum_chunk_batched(c.dist, cs, xt + i0, m, (lt + i0) if lt != NULL else NULL,
                               cols, cs, nf, c.fcol, sh, c.stats + s * c.sld, work)
        i0 += cs
        if i0 < m and mc_poll(rd, tid):
            return 1
    return 0


def accumulate_rows_batched(KernelDist dist, int64_t[::1] blocks, int64_t[::1] slots,
                            int64_t n, int64_t block_size, int64_t n_streams, int n_threads,
                            double[:, ::1] xt, list pieces, int64_t[::1] fcol,
                            double[:, ::1] stats, double[:, ::1] shifts,
                            double[:, ::1] lt=None, int32_t[:, ::1] cats=None):
    """accumulate_round_batched with f's values as rows: `pieces`, a list of
    C-contiguous float64 (m_p, nf) arrays, hold the f values of the round's
    draws in order (the blocks one after the other, as gather_round lays
    them out).  Same statistics, bit for bit.  A Categorical drawn by
    draw_categorical_rows passes its categories `cats` (xt is then unused)."""
    cdef Py_ssize_t R = blocks.shape[0], nf = shifts.shape[1], total, i, p, o
    cdef Py_ssize_t want = dist.d.n_units if dist.d.per_category else dist.d.n_coords
    cdef Py_ssize_t[::1] off = _row_offsets(blocks, n, block_size)
    cdef const double **rowp = NULL
    cdef cnp.ndarray a
    cdef mc_round rd
    cdef _bctx_t c
    if fcol.shape[0] != want or (want and (np.min(fcol) < 0 or np.max(fcol) >= nf)):
        raise ValueError(f"fcol must hold {want} column indices in [0, {nf})")
    if stats.shape[1] != dist.stats_len - 2 + 2 * nf:
        raise ValueError("stats rows of the wrong length for a batched round")
    if R == 0:
        return
    total = off[R - 1] + min(block_size, n - blocks[R - 1] * block_size)
    for a in pieces:
        if a.ndim != 2 or a.dtype != np.float64 or not a.flags.c_contiguous or \
                a.shape[1] != nf:
            raise ValueError(f"f's values must be C-contiguous float64 arrays of {nf} columns")
    if sum(len(a) for a in pieces) != total:
        raise ValueError("f's values do not hold one row per draw of the round")
    memset(&c, 0, sizeof(_bctx_t))
    c.dist = &dist.d
    if cats is not None:
        if not dist.d.per_category or cats.shape[0] < total or cats.shape[1] != dist.d.n_units:
            raise ValueError("cats must hold a per-category family's categories, (total, units)")
        c.cats = &cats[0, 0]
    else:
        c.xt = _rows_ptr(xt)
        c.ld = xt.shape[1]
        c.lt = _rows_ptr(lt) if mc_has_log_column(&dist.d) else NULL
    c.off = &off[0]
    c.stats = _rows_ptr(stats)
    c.sld = stats.shape[1]
    c.shifts = _rows_ptr(shifts)
    c.fcol = &fcol[0] if fcol.shape[0] else NULL
    c.nf = nf
    c.tmp_len = (nf + 16) * (min(block_size, mc_chunk_len(dist.d.draw_size)) + 16)
    mc_round_init(&rd, n, n_streams, block_size, n_threads, R, &blocks[0], &slots[0], None)
    try:
        rowp = <const double **> malloc(max(total, 1) * sizeof(double *))
        if rowp == NULL:
            raise MemoryError()
        o = 0
        for a in pieces:
            for i in range(a.shape[0]):
                rowp[o + i] = (<const double *> cnp.PyArray_DATA(a)) + i * nf
            o += a.shape[0]
        c.rowp = rowp
        c.tmp = mc_alloc_doubles(mc_round_threads(&rd) * c.tmp_len, "the accumulation buffers")
        mc_drive(&rd, _cb_accumulate_rows, &c)
    finally:
        free(c.tmp)
        free(rowp)
        mc_round_free(&rd)


def first_nonfinite(double[:, ::1] v):
    """The flat index of the first non-finite value of v (C order), or -1."""
    if v.shape[0] == 0 or v.shape[1] == 0:
        return -1
    return mc_c_first_nonfinite(&v[0, 0], v.shape[0] * v.shape[1])


def batched_category_totals(double[:, ::1] stats, double[:, ::1] shifts, int64_t[::1] fcol,
                            Py_ssize_t n_units, Py_ssize_t n_cat):
    """The stream merge of batched per-category rows (accumulate_rows_batched's
    layout) summed over the streams, as mcscore._algebra.batched_moments does
    it with total=True, operation for operation: the common shift c0 (nf,)
    and, with d = each stream's shift minus c0 (0 for a stream without draws),
    G = sum_s G0 + sum_s d C, H = (sum_s H0 + 2 sum_s d G0) + sum_s d^2 C
    per f column, and the same per (unit, category) with the unit's column;
    each sum over s in stream order (from the first stream for a plain
    sum, from +0.0 for a sum of products, as add.reduce and einsum run
    them).  Returns (c0, d, G, H, Ck, Gk, Hk), per category (units, K)."""
    cdef Py_ssize_t S = stats.shape[0], nf = shifts.shape[1], P = n_units * n_cat
    cdef Py_ssize_t s, k, j, q, first = 0
    cdef double dv, p
    if shifts.shape[0] != S or fcol.shape[0] != n_units or S == 0 or \
            stats.shape[1] != 1 + 2 * nf + 3 * P:
        raise ValueError("stats, shifts and fcol of inconsistent shapes")
    if n_units and (np.min(fcol) < 0 or np.max(fcol) >= nf):
        raise ValueError(f"fcol must hold column indices in [0, {nf})")
    for s in range(S):
        if stats[s, 0] > 0:
            first = s
            break
    c0_a = np.empty(nf)
    d_a = np.empty((S, nf))
    out = np.zeros((8, max(nf, P)))
    cdef double[::1] c0 = c0_a
    cdef double[:, ::1] d = d_a
    cdef double[:, ::1] o = out
    cdef const double *row
    with nogil:
        for k in range(nf):
            c0[k] = shifts[first, k]
        for s in range(S):
            for k in range(nf):
                d[s, k] = shifts[s, k] - c0[k] if stats[s, 0] > 0 else 0.0
        # rows 0..4 of o: sum G0, sum H0, sum d C, sum d G0, sum d^2 C per column
        for k in range(nf):
            o[0, k] = stats[0, 1 + 2 * k]
            o[1, k] = stats[0, 2 + 2 * k]
        for s in range(S):
            for k in range(nf):
                dv = d[s, k]
                if s:
                    o[0, k] += stats[s, 1 + 2 * k]
                    o[1, k] += stats[s, 2 + 2 * k]
                o[2, k] = o[2, k] + dv * stats[s, 0]
                o[3, k] = o[3, k] + dv * stats[s, 1 + 2 * k]
                p = dv * dv
                o[4, k] = o[4, k] + p * stats[s, 0]
    G = out[0, :nf] + out[2, :nf]
    H = out[1, :nf] + 2 * out[3, :nf] + out[4, :nf]
    out[:] = 0.0
    with nogil:
        # rows 0..5: sum C, sum Gk0, sum Hk0, sum du C, sum du Gk0, sum du^2 C
        row = &stats[0, 1 + 2 * nf]
        for q in range(P):
            o[0, q] = row[3 * q]
            o[1, q] = row[3 * q + 1]
            o[2, q] = row[3 * q + 2]
        for s in range(S):
            row = &stats[s, 1 + 2 * nf]
            for j in range(n_units):
                dv = d[s, fcol[j]]
                p = dv * dv
                for q in range(j * n_cat, (j + 1) * n_cat):
                    if s:
                        o[0, q] += row[3 * q]
                        o[1, q] += row[3 * q + 1]
                        o[2, q] += row[3 * q + 2]
                    o[3, q] = o[3, q] + dv * row[3 * q]
                    o[4, q] = o[4, q] + dv * row[3 * q + 1]
                    o[5, q] = o[5, q] + p * row[3 * q]
    shape = (n_units, n_cat)
    Ck = out[0, :P].reshape(shape).copy()
    Gk = (out[1, :P] + out[3, :P]).reshape(shape)
    Hk = (out[2, :P] + 2 * out[4, :P] + out[5, :P]).reshape(shape)
    return c0_a, d_a, G, H, Ck, Gk, Hk


cdef int _cb_draw_categorical_rows(void *ctx, mc_round *rd, Py_ssize_t r, int64_t b, Py_ssize_t m,
                       int tid) noexcept nogil:
    """Block b of a Categorical (row r of the round) drawn exactly as
    mc_draw_block_polled draws it (chunk by chunk, unit by unit: the
    uniforms, then the alias table), its categories written as rows
    off[r] + i of f's int64 draws (c.out) and of c.cats."""
    cdef _bctx_t *c = <_bctx_t *> ctx
    cdef const mc_dist *dist = c.dist
    cdef Py_ssize_t U = dist.n_units, K = dist.n_cat, i, j, i0, cs
    cdef Py_ssize_t ch = mc_chunk_len(dist.draw_size)
    cdef double *col = c.tmp + tid * c.tmp_len
    cdef bitgen_t *bg = rd.bitgens[r]
    cdef int64_t *xo = (<int64_t *> c.out) + c.off[r] * U
    cdef int32_t *co = c.cats + c.off[r] * U
    cdef int64_t q
    i0 = 0
    while i0 < m:
        cs = ch if m - i0 > ch else m - i0
        for j in range(U):
            random_standard_uniform_fill(bg, cs, col)
            mc_c_alias(col, cs, K, dist.alias_q + j * K, dist.alias_i + j * K)
            for i in range(cs):
                q = <int64_t> col[i]
                xo[(i0 + i) * U + j] = q
                co[(i0 + i) * U + j] = <int32_t> q
        i0 += cs
        if i0 < m and mc_poll(rd, tid):
            return 1
    return 0


def draw_categorical_rows(KernelDist dist, list bitgens, int64_t[::1] blocks,
                          int64_t[::1] slots, int64_t n, int64_t block_size, int n_threads,
                          int64_t[:, ::1] x, int32_t[:, ::1] cats, long long[::1] counter=None):
    """draw_round (or, with counter, draw_round_shared) for a Categorical,
    into rows instead of column-major blocks: the same draws (the same
    uniforms of each stream, the same alias table), block r's draw i at
    row off + i (the blocks one after the other) of x (int64, f's draws)
    and of cats (int32, the categories the accumulation reads)."""
    cdef Py_ssize_t R = blocks.shape[0], total
    cdef Py_ssize_t[::1] off = _row_offsets(blocks, n, block_size)
    cdef mc_round rd
    cdef _bctx_t c
    cdef int nt
    if dist.d.family != MC_CATEGORICAL or dist.d.alias_q == NULL:
        raise ValueError("draw_categorical_rows draws a Categorical")
    if R == 0:
        return
    total = off[R - 1] + min(block_size, n - blocks[R - 1] * block_size)
    if x.shape[0] < total or cats.shape[0] < total or x.shape[1] != dist.d.n_units or \
            cats.shape[1] != dist.d.n_units:
        raise ValueError("x and cats must have a row per draw of the round and a column per unit")
    memset(&c, 0, sizeof(_bctx_t))
    c.dist = &dist.d
    c.off = &off[0]
    c.out = &x[0, 0]
    c.cats = &cats[0, 0]
    c.tmp_len = mc_chunk_len(dist.d.draw_size)
    mc_round_init(&rd, n, 0, block_size, 1 if counter is not None else n_threads, R,
                  &blocks[0], &slots[0], bitgens)
    rd.ctl.claim = &counter[0] if counter is not None else NULL
    nt = mc_round_threads(&rd)
    try:
        c.tmp = mc_alloc_doubles(nt * c.tmp_len, "the draw buffers")
        mc_drive(&rd, _cb_draw_categorical_rows, &c)
    finally:
        free(c.tmp)
        mc_round_free(&rd)
