"""Many coordinates (issue 17, target 3): the Normal family's inline PCG64
standard normal fill gives NumPy's values bit for bit, and the estimators
built on it (fused integrand, Python f) agree with the NumPy fill and with
the exact gradient."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import _kernels as K
from mcscore import integrands as I


def _bits(a):
    return np.asarray(a, dtype=np.float64).view(np.uint64)


def test_inline_fill_is_used_on_this_build():
    # a gcc / clang build on a 64-bit platform has 128-bit integers: the
    # checks at import pass with NumPy's PCG64
    assert K.NORMAL_FILL_INLINE


@pytest.mark.parametrize("seed", [0, 1, 20240601, 2**63 + 5])
def test_fill_matches_numpy_bit_for_bit(seed):
    m = 1_000_003  # about 7000 draws leave the ziggurat's common case
    bg = np.random.PCG64(seed)
    ref_bg = np.random.PCG64(seed)
    got = K.std_normal_fill(bg, m)
    want = np.random.Generator(ref_bg).standard_normal(m)
    assert np.array_equal(_bits(got), _bits(want))
    assert bg.state == ref_bg.state  # the same words consumed
    # and it goes on from there in step with NumPy, in odd-sized pieces
    parts = [K.std_normal_fill(bg, k) for k in (1, 0, 7, 1000)]
    want = np.random.Generator(ref_bg).standard_normal(1008)
    assert np.array_equal(_bits(np.concatenate(parts)), _bits(want))


def test_fill_covers_the_tails_like_numpy():
    # far tails come from NumPy's own slow path: the extremes agree too
    bg, ref = np.random.PCG64(99), np.random.PCG64(99)
    got = K.std_normal_fill(bg, 3_000_000)
    want = np.random.Generator(ref).standard_normal(3_000_000)
    assert np.abs(got).max() > 4.5
    assert np.array_equal(_bits(got), _bits(want))


def test_other_bit_generators_use_numpys_fill():
    # the inline step is PCG64's: any other generator goes to NumPy's fill
    for cls in (np.random.MT19937, np.random.SFC64, np.random.PCG64DXSM, np.random.Philox):
        got = K.std_normal_fill(cls(3), 5000)
        want = np.random.Generator(cls(3)).standard_normal(5000)
        assert np.array_equal(_bits(got), _bits(want)), cls.__name__


def _sumsq():
    return I.sum_of_squares()


def _pyf(x):
    return (x * x).sum(axis=1)


def _result_bits(r):
    return np.concatenate([_bits(np.ravel(a)) for k in sorted(r.grad)
                           for a in (r.grad[k], r.stderr[k])])


@pytest.mark.parametrize("d,n", [(1, 5), (5, 10_000), (50, 3_001), (200, 1_000)])
def test_estimates_match_numpys_fill_bit_for_bit(d, n):
    loc, scale = np.linspace(-1, 1, d), np.linspace(0.5, 1.5, d)
    calls = [(f, bl, t) for f in (_sumsq(), _pyf) for bl in (None, "loo", 0.25) for t in (1, 2)]

    def run_all():
        return [_result_bits(mc.score_grad(f, mc.Normal(loc, scale), n, rng=11, baseline=bl,
                                           n_threads=t)) for f, bl, t in calls]
    inline = run_all()
    K._normal_fill_setup(False)
    try:
        numpy = run_all()
    finally:
        K._normal_fill_setup(True)
    for a, b in zip(inline, numpy):
        assert np.array_equal(a, b)
    # one and two threads agree bit for bit
    for i in range(0, len(inline), 2):
        assert np.array_equal(inline[i], inline[i + 1])


@pytest.mark.parametrize("f", [_sumsq(), _pyf], ids=["fused", "python"])
def test_many_coordinates_gradient_against_exact(f):
    # E sum_j x_j^2 = sum_j loc_j^2 + scale_j^2: gradient (2 loc, 2 scale)
    d, n = 50, 200_000
    loc, scale = np.linspace(-1, 1, d), np.linspace(0.5, 1.5, d)
    r = mc.score_grad(f, mc.Normal(loc, scale), n, rng=2024, baseline="loo")
    for name, exact in (("loc", 2 * loc), ("scale", 2 * scale)):
        z = (r.grad[name] - exact) / r.stderr[name]
        assert np.all(np.abs(z) < 5), (name, np.abs(z).max())


@pytest.mark.parametrize("n_threads", [1, 2])
def test_draws_f_keeps_are_not_reused(n_threads):
    # the round buffers serve the next call only when f kept nothing of x
    # (within a call x is reused from round to round, as documented: one
    # round here)
    loc, scale = np.linspace(-1, 1, 5), np.linspace(0.5, 1.5, 5)
    kept, copies = [], []

    def keep(x):
        kept.append(x)
        kept.append(x[:7])
        copies.append(x.copy())
        return (x * x).sum(axis=1)
    first = mc.score_grad(keep, mc.Normal(loc, scale), 20_000, rng=5, n_threads=n_threads)
    for _ in range(3):
        again = mc.score_grad(_pyf, mc.Normal(loc, scale), 20_000, rng=6, n_threads=n_threads)
    for k, c in zip(kept[::2], copies):
        assert np.array_equal(k, c)
    assert np.array_equal(kept[1], copies[0][:7])
    # and a call whose buffers come back from the pool gives the same bits
    repeat = mc.score_grad(_pyf, mc.Normal(loc, scale), 20_000, rng=5, n_threads=n_threads)
    assert np.array_equal(_result_bits(first), _result_bits(repeat))
    assert not np.array_equal(_result_bits(again), _result_bits(repeat))


def test_rows_reach_f_as_one_c_contiguous_float64_array():
    seen = []

    def f(x):
        seen.append((x.shape, x.dtype, x.flags.c_contiguous))
        return (x * x).sum(axis=1)
    d, n = 50, 20_000
    mc.score_grad(f, mc.Normal(np.zeros(d), np.ones(d)), n, rng=1)
    assert all(s[1] == np.float64 and s[2] and s[0][1] == d for s in seen)
    assert sum(s[0][0] for s in seen) == n
    assert max(s[0][0] for s in seen) >= 5000  # f is called on large chunks


def _flat_normal(d):
    from mcscore import _rounds as R
    dist = mc.Normal(np.linspace(-1, 1, d), np.linspace(0.5, 1.5, d))
    return dist._kernel_dist(), R


@pytest.mark.parametrize("d", [1, 5, 17, 300])
@pytest.mark.parametrize("shared", [False, True])
def test_draw_round_rows_is_draw_round_transposed(d, shared):
    # blocks of a Dask-like round (not consecutive, the partial last block
    # in the middle), laid out at the given row offsets
    kd, R = _flat_normal(d)
    n, B, S = 1000, 96, 4
    blocks = np.array([2, 10, 6], dtype=np.int64)   # block 10 holds 40 draws
    slots = np.arange(3, dtype=np.int64)
    m = [min(B, n - b * B) for b in blocks]
    off = np.array([0, m[0], m[0] + m[1]], dtype=np.int64)
    root = np.random.SeedSequence(3)
    xt_ref = np.empty((3, d * B))
    K.draw_round(kd, R.stream_bit_generators(root, [2, 2, 2]), blocks, slots, n, B, 1, xt_ref)
    xt = np.empty((3, d * B))
    rows = np.full((sum(m) + 5, d), np.nan)
    counter = np.zeros(1, dtype=np.longlong) if shared else None
    K.draw_round_rows(kd, R.stream_bit_generators(root, [2, 2, 2]), blocks, slots, n, B, 2,
                      xt, None, rows, off, counter)
    for r in range(3):
        assert np.array_equal(_bits(xt[r, :d * m[r]]), _bits(xt_ref[r, :d * m[r]]))
        want = xt_ref[r, :d * m[r]].reshape(d, m[r]).T
        assert np.array_equal(_bits(rows[off[r]:off[r] + m[r]]), _bits(want))
    assert np.isnan(rows[sum(m):]).all()  # nothing written past the round
    with pytest.raises(ValueError, match="rows holds"):
        K.draw_round_rows(kd, R.stream_bit_generators(root, [2, 2, 2]), blocks, slots, n, B,
                          1, xt, None, rows[:10], off)
