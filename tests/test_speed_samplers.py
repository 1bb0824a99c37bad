"""The column fills rewritten for speed (Bernoulli, Geometric, Poisson,
Binomial) still give NumPy's draws bit for bit: a one-coordinate
distribution sampled from a Generator consumes its bit generator exactly as
NumPy's own method does."""
import numpy as np
import pytest

import mcscore as mc

N = 20_000


@pytest.mark.parametrize("p", [1e-9, 1e-4, 0.05, 0.3, 1 / 3, 0.3333333333333334, 0.5, 0.9,
                               1 - 1e-12])
def test_bernoulli_and_geometric_are_numpys(p):
    x = mc.Bernoulli(probs=p).sample(N, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(x, np.random.default_rng(1).random(N) < p)
    x = mc.Geometric(probs=p).sample(N, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(x, np.random.default_rng(2).geometric(p, N) - 1)


@pytest.mark.parametrize("lam", [1e-9, 0.3, 1.0, 3.5, 9.99, 10.0, 57.0, 1e5])
def test_poisson_is_numpys(lam):
    x = mc.Poisson(lam).sample(N, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(x, np.random.default_rng(3).poisson(lam, N))


@pytest.mark.parametrize("n,p", [(1, 0.5), (10, 0.3), (10, 0.7), (10, 0.5), (60, 0.5),
                                 (61, 0.5), (1000, 0.03), (1000, 0.031), (100, 0.999),
                                 (10**6, 1e-5), (7, 1 - 1e-12), (200, 0.2), (400, 0.5)])
def test_binomial_is_numpys(n, p):
    x = mc.Binomial(n, probs=p).sample(N, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(x, np.random.default_rng(4).binomial(n, p, N))


def test_several_units_draw_each_column_from_the_stream():
    """Two units: each chunk draws unit 0's column, then unit 1's."""
    q = mc.Poisson([2.0, 30.0])
    x = q.sample(100, rng=np.random.default_rng(5))  # one chunk
    g = np.random.default_rng(5)
    np.testing.assert_array_equal(x[:, 0], g.poisson(2.0, 100))
    np.testing.assert_array_equal(x[:, 1], g.poisson(30.0, 100))


@pytest.mark.parametrize("a", [0.3, 1.0, 1.0000001, 2.5, 40.0])
def test_gamma_is_numpys(a):
    x = mc.Gamma(a, 2.0).sample(N, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(x, np.random.default_rng(6).standard_gamma(a, N) * (1.0 / 2.0))


@pytest.mark.parametrize("a,b", [(2.0, 3.0), (0.5, 0.7), (0.5, 3.0), (1.0, 1.0), (7.0, 0.2)])
def test_beta_is_numpys(a, b):
    x = mc.Beta(a, b).sample(N, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(x, np.random.default_rng(7).beta(a, b, N))


@pytest.mark.parametrize("r,p", [(4.0, 0.4), (0.5, 0.9), (1.0, 0.2), (30.0, 0.7)])
def test_negative_binomial_is_numpys(r, p):
    x = mc.NegativeBinomial(r, probs=p).sample(N, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(x, np.random.default_rng(8).negative_binomial(r, 1 - p, N))


@pytest.mark.parametrize("n,p", [(10, [0.1, 0.2, 0.3, 0.2, 0.2]), (1, [0.5, 0.5]), (0, [0.3, 0.7]),
                                 (64, [0.6, 0.1, 0.3]), (65, [0.6, 0.1, 0.3]),
                                 (40, [1e-9, 0.999999998, 1e-9]), (7, [0.05] * 20)])
def test_multinomial_is_numpys(n, p):
    p = np.asarray(p) / np.sum(p)
    x = mc.Multinomial(n, probs=p).sample(500, rng=np.random.default_rng(9))  # one chunk
    np.testing.assert_array_equal(x, np.random.default_rng(9).multinomial(n, p, 500))
