"""Covariance (batch means over streams) of batched and Joint estimates:
res.linear's standard error is calibrated against exact gradients."""
import numpy as np
import pytest
from scipy import special

import mcscore as mc

R = 200
TOL = 5 * np.sqrt(2 / R)


def _mean_z2(values, ses, exact):
    z = (np.asarray(values) - exact) / np.asarray(ses)
    return float(np.mean(z * z))


@pytest.mark.parametrize("baseline", [None, "loo", "optimal"])
def test_joint_linear_is_calibrated(baseline):
    p_logit, mu, s = 0.3, 0.5, 1.2
    p = special.expit(p_logit)
    q = mc.Joint(z=mc.Bernoulli(logits=p_logit), w=mc.Normal(mu, s))

    def f(d):
        return d["z"] * d["w"] ** 2 + d["w"]

    exact = p * (1 - p) * (mu * mu + s * s) + (2 * p * mu + 1) + 2 * p * s
    vals, ses = [], []
    for r in range(R):
        res = mc.score_grad(f, q, 4096, rng=r, baseline=baseline, block_size=64)
        names = res.coordinates()
        assert len(names) == 3 and res.cov.shape == (3, 3)
        lin = res.linear({k: np.ones_like(np.asarray(v, float)) for k, v in res.grad.items()})
        vals.append(float(np.ravel(lin.estimate)[0]))
        ses.append(float(np.ravel(lin.stderr)[0]))
    assert abs(_mean_z2(vals, ses, exact) - 1) < TOL


def test_batched_linear_is_calibrated_and_elements_uncorrelated():
    mu = np.array([0.0, 0.5, -1.0])
    s = np.array([1.0, 0.7, 1.5])
    q = mc.Normal(mu, s)

    def f(x):  # one column per batch element: x_b^2
        return x ** 2

    exact = np.sum(2 * mu)  # sum over elements of d/dloc_b E[x_b^2]
    vals, ses, cross = [], [], []
    for r in range(R):
        res = mc.score_grad(f, q, 4096, rng=r, baseline="loo", batch_ndims=1, block_size=64)
        C = res.cov
        assert C.shape == (6, 6)
        J = {"loc": np.ones(3), "scale": np.zeros(3)}
        lin = res.linear(J)
        vals.append(float(np.ravel(lin.estimate)[0]))
        ses.append(float(np.ravel(lin.stderr)[0]))
        d = np.sqrt(np.diag(C))
        cross.append(C[0, 1] / (d[0] * d[1]))
    assert abs(_mean_z2(vals, ses, exact) - 1) < TOL
    # independent batch elements: the mean correlation is zero within its error
    assert abs(np.mean(cross)) < 5 * np.std(cross) / np.sqrt(R)
