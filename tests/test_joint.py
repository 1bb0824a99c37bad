"""Joint distributions: a product of named independent components of any
families.  f receives a dict of component draws; gradients are keyed
"name.param".  Against closed forms and exact sums over the discrete
supports, for every estimator and baseline the components support."""
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import expit, softmax

import mcscore as mc
from mcscore import integrands as I

BASELINES = [None, 0.5, "loo", "optimal"]

LZ = np.array([0.4, -0.7])             # z ~ Bernoulli(logits), 2 coordinates
LC = np.array([0.2, -0.5, 1.0])         # c ~ Categorical(logits), 3 categories
RC = np.array([1.0, -2.0, 0.5])         # reward of c
LOC, SCALE = np.array([0.3, -0.2, 0.5]), np.array([0.8, 1.2, 0.6])   # w ~ Normal
A, RATE = np.array([2.0, 3.5]), np.array([1.5, 0.7])                  # g ~ Gamma


def _joint():
    return mc.Joint(z=mc.Bernoulli(logits=LZ), c=mc.Categorical(logits=LC),
                    w=mc.Normal(LOC, SCALE), g=mc.Gamma(A, RATE))


def _f(x):
    z, w, g = x["z"], x["w"], x["g"]
    return ((z[:, 0] + 2 * z[:, 1]) * (w[:, 0] + w[:, 1] ** 2 + w[:, 2]) + RC[x["c"]]
            + g[:, 0] * z[:, 1] + g[:, 1])


def _exact():
    """E[f] and its gradient: products of independent means; the Categorical
    part an exact sum over its 3 categories."""
    p = expit(LZ)
    pc = softmax(LC)
    Aw = LOC[0] + LOC[1] ** 2 + SCALE[1] ** 2 + LOC[2]
    zc = p[0] + 2 * p[1]
    value = zc * Aw + pc @ RC + A[0] / RATE[0] * p[1] + A[1] / RATE[1]
    grad = {"z.logits": p * (1 - p) * np.array([Aw, 2 * Aw + A[0] / RATE[0]]),
            "c.logits": pc * (RC - pc @ RC),
            "w.loc": zc * np.array([1.0, 2 * LOC[1], 1.0]),
            "w.scale": zc * np.array([0.0, 2 * SCALE[1], 0.0]),
            "g.concentration": np.array([p[1] / RATE[0], 1 / RATE[1]]),
            "g.rate": np.array([-p[1] * A[0] / RATE[0] ** 2, -A[1] / RATE[1] ** 2])}
    return value, grad


def _z_ok(res, exact, value=None, bound=5.0):
    assert set(res.grad) == set(exact)
    for k, v in exact.items():
        assert res.grad[k].shape == np.shape(v), k
        se = res.stderr[k]
        nz = se > 0
        z = (res.grad[k][nz] - np.asarray(v)[nz]) / se[nz]
        assert np.all(np.abs(z) < bound), (k, res.grad[k], v, se)
        # a zero standard error only where the gradient is exactly 0
        np.testing.assert_array_equal(res.grad[k][~nz], np.asarray(v)[~nz])
    if value is not None:
        assert np.all(np.abs(res.value - value) < bound * res.value_stderr)


# --- the distribution ------------------------------------------------------------

def test_construction_names_keys_and_shapes():
    J = _joint()
    J2 = mc.Joint({"z": J["z"], "c": J["c"], "w": J["w"], "g": J["g"]})
    assert J.names == J2.names == ("z", "c", "w", "g")
    assert list(J.params) == ["z.logits", "c.logits", "w.loc", "w.scale", "g.concentration",
                              "g.rate"]
    assert J.draw_size == 2 + 1 + 3 + 2 and J.draw_shape == (8,)
    assert J.offsets == {"z": 0, "c": 2, "w": 3, "g": 6}
    assert J.batch_shape == ()  # the components' batch shapes share no prefix
    assert "Joint(z=Bernoulli(" in repr(J)
    assert mc.Joint(a=mc.Normal(np.zeros((4, 2)), np.ones((4, 2))),
                    b=mc.Bernoulli(logits=np.zeros(4))).batch_shape == (4,)
    # a dotted keyword replaces one parameter of a component (vi.fit rebuilds q so)
    J3 = mc.Joint(**J._all_params(), **{"w.loc": np.zeros(3)})
    np.testing.assert_array_equal(J3["w"].loc, np.zeros(3))
    np.testing.assert_array_equal(J3["w"].scale, SCALE)


def test_sample_log_prob_score_mean_entropy():
    J = _joint()
    x = J.sample(500, rng=1)
    assert isinstance(x, dict) and x.shape == (500,)
    assert {k: v.shape for k, v in x.items()} == {"z": (500, 2), "c": (500,), "w": (500, 3),
                                                  "g": (500, 2)}
    lp = J.log_prob(x)
    want = (stats.bernoulli.logpmf(x["z"], expit(LZ)).sum(1) + np.log(softmax(LC))[x["c"]]
            + stats.norm.logpdf(x["w"], LOC, SCALE).sum(1)
            + stats.gamma.logpdf(x["g"], A, scale=1 / RATE).sum(1))
    np.testing.assert_allclose(lp, want, rtol=1e-10)
    sc = J.score(x)
    for name, comp in J.components.items():
        for k, v in comp.score(x[name]).items():
            np.testing.assert_array_equal(sc[f"{name}.{k}"], v)
    # the flat layout round-trips
    flat = J.flatten(x)
    assert flat.shape == (500, 8)
    back = J.unflatten(flat)
    for k in x:
        np.testing.assert_array_equal(back[k], x[k])
    m = J.mean()
    np.testing.assert_allclose(m["w"], LOC)
    L = mc.Joint(a=mc.Laplace(np.zeros(2), np.array([1.0, 2.0])), b=mc.Laplace(0.0, 3.0))
    np.testing.assert_allclose(L.entropy(), 3 + np.log(2 * 1) + np.log(2 * 2) + np.log(2 * 3))


def test_sample_moments_match_components():
    n = 100_000
    x = _joint().sample(n, rng=2)
    assert np.all(np.abs(x["z"].mean(0) - expit(LZ)) < 5 * 0.5 / np.sqrt(n))
    assert np.all(np.abs(np.bincount(x["c"]) / n - softmax(LC)) < 5 * 0.5 / np.sqrt(n))
    assert np.all(np.abs(x["w"].mean(0) - LOC) < 5 * SCALE / np.sqrt(n))
    assert np.all(np.abs(x["g"].mean(0) - A / RATE) < 5 * np.sqrt(A) / RATE / np.sqrt(n))


# --- estimators --------------------------------------------------------------------

@pytest.mark.parametrize("baseline", BASELINES)
def test_score_grad_every_baseline_exact(baseline):
    value, grad = _exact()
    res = mc.score_grad(_f, _joint(), 40_000, rng=3, baseline=baseline)
    _z_ok(res, grad, value)
    assert isinstance(res.value, float)


def test_calibration_over_repeats():
    """mean z^2 over R = 100 repeats within 5 sqrt(2/R) of 1 (one
    coordinate per component)."""
    _, grad = _exact()
    J = _joint()
    R = 100
    z = {k: [] for k in ("z.logits", "c.logits", "w.loc", "g.rate")}
    for seed in range(R):
        res = mc.score_grad(_f, J, 2_000, rng=100 + seed, baseline="loo")
        for k in z:
            z[k].append((res.grad[k][1] - grad[k][1]) / res.stderr[k][1])
    for k, v in z.items():
        assert abs(np.mean(np.square(v)) - 1) < 5 * np.sqrt(2 / R), (k, np.mean(np.square(v)))


def test_bit_identical_across_threads_and_chunks():
    J = _joint()
    runs = [mc.score_grad(_f, J, 60_000, rng=4, baseline="optimal", n_threads=t, chunk_size=c)
            for t, c in ((1, None), (2, None), (2, 777))]
    for r in runs[1:]:
        for k in r.grad:
            np.testing.assert_array_equal(r.grad[k], runs[0].grad[k])
            np.testing.assert_array_equal(r.stderr[k], runs[0].stderr[k])
        assert r.value == runs[0].value


def test_rloo_grad_exact():
    value, grad = _exact()
    res = mc.rloo_grad(_f, _joint(), 10_000, k=4, rng=5)
    _z_ok(res, grad, value)


@pytest.mark.parametrize("baseline", BASELINES)
def test_score_grad_from_samples_with_dict_draws(baseline):
    value, grad = _exact()
    J = _joint()
    x = J.sample(40_000, rng=6)
    res = mc.score_grad_from_samples(J, x, _f(x), baseline=baseline)
    _z_ok(res, grad, value)


def _flat_exact_sum_of_squares():
    """E[sum of squares of the flat draw] and its gradient."""
    p, pc, k = expit(LZ), softmax(LC), np.arange(3.0)
    Ec2 = pc @ k**2
    grad = {"z.logits": p * (1 - p), "c.logits": pc * (k**2 - Ec2), "w.loc": 2 * LOC,
            "w.scale": 2 * SCALE, "g.concentration": (2 * A + 1) / RATE**2,
            "g.rate": -2 * A * (A + 1) / RATE**3}
    value = p.sum() + Ec2 + (LOC**2 + SCALE**2).sum() + (A * (A + 1) / RATE**2).sum()
    return value, grad


def test_fused_integrand_reads_the_flat_draw():
    value, grad = _flat_exact_sum_of_squares()
    J = _joint()
    res = mc.score_grad(I.sum_of_squares(), J, 40_000, rng=7, baseline="loo")
    _z_ok(res, grad, value)
    py = mc.score_grad(lambda x: sum((v.reshape(len(v), -1).astype(float) ** 2).sum(1)
                                     for v in x.values()), J, 40_000, rng=7, baseline="loo")
    for k in grad:
        np.testing.assert_allclose(res.grad[k], py.grad[k], rtol=1e-9, atol=1e-12)


def test_c_callback_receives_components_in_order():
    numba = pytest.importorskip("numba")
    from numba import types

    @numba.cfunc(types.float64(types.CPointer(types.float64), types.intp))
    def cf(x, d):  # layout: z0 z1 | c | w0 w1 w2 | g0 g1
        return (x[0] + 2 * x[1]) * (x[3] + x[4] * x[4] + x[5]) + x[6] * x[1] + x[7]

    def py(x):
        z, w, g = x["z"], x["w"], x["g"]
        return (z[:, 0] + 2 * z[:, 1]) * (w[:, 0] + w[:, 1] ** 2 + w[:, 2]) + g[:, 0] * z[:, 1] \
            + g[:, 1]

    J = _joint()
    a = mc.score_grad(cf, J, 20_000, rng=8, baseline="optimal")
    b = mc.score_grad(py, J, 20_000, rng=8, baseline="optimal")
    for k in a.grad:
        np.testing.assert_allclose(a.grad[k], b.grad[k], rtol=1e-9, atol=1e-12)
    _, grad = _exact()
    grad["c.logits"] = np.zeros(3)
    _z_ok(a, {k: v for k, v in grad.items() if k != "c.logits"} | {"c.logits": grad["c.logits"]})


def test_pathwise_when_every_component_has_it():
    a, b = np.array([2.0, 3.0]), np.array([1.5, 2.5])
    J = mc.Joint(w=mc.Normal(LOC, SCALE), u=mc.Beta(a, b), e=mc.Exponential(np.array([2.0])))

    def f(x):
        return (x["w"] ** 2).sum(1) + (x["u"] ** 2).sum(1) + x["e"][:, 0] * x["w"][:, 0]

    def grad_f(x):
        gw = 2 * x["w"]
        gw[:, 0] += x["e"][:, 0]
        return {"w": gw, "u": 2 * x["u"], "e": x["w"][:, :1]}

    def Eu2(a, b):
        return a * (a + 1) / ((a + b) * (a + b + 1))

    h = 1e-6
    exact = {"w.loc": 2 * LOC + np.array([0.5, 0, 0]), "w.scale": 2 * SCALE,
             "u.concentration1": (Eu2(a + h, b) - Eu2(a - h, b)) / (2 * h),
             "u.concentration0": (Eu2(a, b + h) - Eu2(a, b - h)) / (2 * h),
             "e.rate": np.array([-LOC[0] / 4.0])}
    res = mc.pathwise_grad(f, J, 20_000, grad_f=grad_f, rng=9)
    _z_ok(res, exact)
    with pytest.raises(ValueError, match=r"Joint component 'z' \(Bernoulli\): pathwise_grad"):
        mc.pathwise_grad(f, mc.Joint(w=J["w"], z=mc.Bernoulli(logits=LZ)), 100, grad_f=grad_f)


def _ln_joint():
    return mc.Joint(w=mc.Normal(LOC, SCALE), v=mc.LogNormal(np.array([0.1, 0.3]),
                                                            np.array([0.5, 0.8])))


def _ln_f(x):
    return (x["w"] ** 2).sum(1) + (np.log(x["v"]) ** 2).sum(1) + 3 * x["w"][:, 0]


LN_EXACT = {"w.loc": 2 * LOC + np.array([3.0, 0, 0]), "w.scale": 2 * SCALE,
            "v.loc": 2 * np.array([0.1, 0.3]), "v.scale": 2 * np.array([0.5, 0.8])}


def test_control_variates_and_antithetic_when_every_component_has_them():
    J = _ln_joint()
    plain = mc.score_grad(_ln_f, J, 20_000, rng=10)

    def grad_f(x):
        return {"w": 2 * x["w"] + np.array([3.0, 0, 0]), "v": 2 * np.log(x["v"]) / x["v"]}

    pair = (lambda x: x["w"][:, 0],
            {"w.loc": np.array([1.0, 0, 0]), "w.scale": np.zeros(3), "v.loc": np.zeros(2),
             "v.scale": np.zeros(2)})
    for kw in (dict(control_variates=["delta"], grad_f=grad_f), dict(control_variates=[pair]),
               dict(antithetic=True), dict(antithetic=True, baseline="optimal")):
        res = mc.score_grad(_ln_f, J, 20_000, rng=10, **kw)
        _z_ok(res, LN_EXACT)
    res = mc.score_grad(_ln_f, J, 20_000, rng=10, control_variates=["delta"], grad_f=grad_f)
    assert np.all(res.stderr["w.loc"] < plain.stderr["w.loc"])
    bad = mc.Joint(w=J["w"], z=mc.Bernoulli(logits=LZ))
    with pytest.raises(ValueError, match=r"Joint component 'z' \(Bernoulli\): antithetic"):
        mc.score_grad(_ln_f, bad, 100, antithetic=True)
    bad = mc.Joint(w=J["w"], c=mc.Categorical(logits=LC))
    with pytest.raises(ValueError, match=r"Joint component 'c'.*'delta' is not available"):
        mc.score_grad(_ln_f, bad, 100, control_variates=["delta"], grad_f=grad_f)


def test_batched_joint():
    B = 5
    g = np.random.default_rng(11)
    lz, loc = g.normal(size=B), g.normal(size=(B, 2))
    J = mc.Joint(z=mc.Bernoulli(logits=lz), w=mc.Normal(loc, np.ones((B, 2))))
    assert J.batch_shape == (B,)

    def f(x):
        return x["z"] * (x["w"] ** 2).sum(2)

    p = expit(lz)
    Aw = (loc**2 + 1).sum(1)
    exact = {"z.logits": p * (1 - p) * Aw, "w.loc": p[:, None] * 2 * loc,
             "w.scale": p[:, None] * 2 * np.ones((B, 2))}
    for baseline in BASELINES:
        res = mc.score_grad(f, J, 40_000, rng=12, baseline=baseline, batch_ndims=1)
        _z_ok(res, exact, p * Aw)
        assert res.value.shape == (B,)
    _z_ok(mc.rloo_grad(f, J, 10_000, rng=13, batch_ndims=1), exact, p * Aw)
    x = J.sample(40_000, rng=14)
    _z_ok(mc.score_grad_from_samples(J, x, f(x), baseline="loo", batch_ndims=1), exact, p * Aw)
    with pytest.raises(ValueError, match=r"= \(\d+, 5\).*got \(\d+,\)"):
        mc.score_grad(lambda x: f(x).sum(1), J, 1000, batch_ndims=1)
    with pytest.raises(ValueError, match="larger than the batch rank"):
        mc.score_grad(f, J, 1000, batch_ndims=2)


def test_vi_fit_joint_q_reaches_the_mean_field_optimum():
    """A model with a binary and a continuous latent: z ~ Bernoulli(sigmoid
    1), w ~ N(0, 1), y ~ N(w + z, 1), y = 2.  The mean-field ELBO over
    q = Bernoulli(logit) x Normal(m, s) is known exactly; vi.fit with a
    Joint q reaches its maximiser."""
    y = 2.0

    def log_joint(x):
        z, w = x["z"][:, 0], x["w"][:, 0]
        return z * 1.0 - np.log1p(np.e) - 0.5 * w**2 - 0.5 * (y - w - z) ** 2

    def neg_elbo(t):
        lz, m, ls = t
        p, s = expit(lz), np.exp(ls)
        e = (p - np.log1p(np.e) - 0.5 * (m**2 + s**2)
             - 0.5 * ((y - m - p) ** 2 + s**2 + p * (1 - p)))
        ent = -(p * np.log(p) + (1 - p) * np.log1p(-p)) + 0.5 * np.log(2 * np.pi * np.e * s**2)
        return -(e + ent)

    opt = optimize.minimize(neg_elbo, [0.0, 0.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    q = mc.Joint(z=mc.Bernoulli(logits=np.zeros(1)), w=mc.Normal(np.zeros(1), np.ones(1)))
    res = mc.vi.fit(log_joint, q, steps=1500, n=200, lr=0.05, rng=0, progress=False)
    assert res.transforms == {"z.logits": "identity", "w.loc": "identity", "w.scale": "log"}
    got = [res.q["z"].logits[0], res.q["w"].loc[0], np.log(res.q["w"].scale[0])]
    np.testing.assert_allclose(got, opt, atol=0.08)
    # and the ELBO gradient at the optimum is zero within its standard error
    qo = mc.Joint(z=mc.Bernoulli(logits=opt[:1]), w=mc.Normal(opt[1:2], np.exp(opt[2:])))
    g = mc.vi.elbo_grad(log_joint, qo, 200_000, rng=1)
    for k in g.grad:
        assert np.all(np.abs(g.grad[k]) < 5 * g.stderr[k]), k


# --- Dask ------------------------------------------------------------------------------

def test_dask_bit_identical():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        J = _joint()
        runs = [lambda c: mc.score_grad(_f, J, 20_000, rng=15, baseline="optimal", client=c,
                                        n_streams=8),
                lambda c: mc.score_grad(I.sum_of_squares(), J, 20_000, rng=15, client=c,
                                        n_streams=8),
                lambda c: mc.rloo_grad(_f, J, 5_000, rng=16, client=c, n_streams=8),
                lambda c: mc.score_grad(_ln_f, _ln_joint(), 20_000, rng=17, client=c,
                                        antithetic=True, n_streams=8)]
        for run in runs:
            a, b = run(None), run(client)
            for k in a.grad:
                np.testing.assert_array_equal(a.grad[k], b.grad[k])
                np.testing.assert_array_equal(a.stderr[k], b.stderr[k])
            assert a.value == b.value and a.value_stderr == b.value_stderr


# --- errors ---------------------------------------------------------------------------

def test_mismatched_components_are_clear_errors():
    n = mc.Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="at least one component"):
        mc.Joint()
    with pytest.raises(ValueError, match="at least one component"):
        mc.Joint({})
    with pytest.raises(TypeError, match=r"component 'w' must be an mcscore distribution.*float"):
        mc.Joint(w=1.0)
    with pytest.raises(TypeError, match=r"component 'j'.*not a Joint"):
        mc.Joint(j=mc.Joint(w=n))
    with pytest.raises(TypeError, match="as a dict"):
        mc.Joint([n])
    with pytest.raises(ValueError, match=r"component name 'w' given twice"):
        mc.Joint({"w": n}, w=n)
    for bad in ("a.b", "1x", "", "w x"):
        with pytest.raises(ValueError, match="Python identifiers without dots"):
            mc.Joint({bad: n})
    with pytest.raises(ValueError, match=r"'q.loc' names no component"):
        mc.Joint(w=n, **{"q.loc": 1.0})
    with pytest.raises(ValueError, match=r"'w.rate' names no parameter"):
        mc.Joint(w=n, **{"w.rate": 1.0})


def test_bad_draws_and_callables():
    J = _joint()
    x = J.sample(10, rng=0)
    with pytest.raises(ValueError, match="x must be a dict with the components"):
        J.log_prob({"z": x["z"]})
    with pytest.raises(ValueError, match="same number of draws"):
        J.log_prob({**x, "w": x["w"][:5]})
    with pytest.raises(ValueError, match=r"f returned shape \(\d+, 2\) instead of"):
        mc.score_grad(lambda x: x["z"], J, 1000)
    with pytest.raises(TypeError, match="grad_f must return a dict"):
        mc.pathwise_grad(lambda x: x["w"].sum(1), mc.Joint(w=mc.Normal(LOC, SCALE)), 100,
                         grad_f=lambda x: x["w"])
    with pytest.raises(TypeError, match="no single kernel description"):
        mc.compare_estimators(_f, J, 100)
    with pytest.raises(ValueError, match="got Joint"):
        mc.disarm_grad(lambda x: x.sum(1), J, 100)
