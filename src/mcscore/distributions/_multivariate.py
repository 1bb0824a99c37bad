"""The Gaussian vector families: MultivariateNormal (full covariance, by a
covariance matrix, a precision matrix or a Cholesky factor) and
LowRankMultivariateNormal (covariance W W^T + diag(D)), named and
parameterised as in ``torch.distributions``.

A draw is a d-vector (``event_shape = (d,)``); ``loc`` may carry leading
batch dimensions (independent vectors sharing the one matrix).  The kernels
draw x = loc + L z by the Cholesky factor L (O(d^2) per draw, column by
column over a chunk of draws) or x = loc + W u + sqrt(D) e (O(d r)), and
compute each score coordinate from the factor with the family's own score
kernel (``SK_FAMILY`` terms, ``_kernels_multivariate.pxi``): no inverse per
draw, the d x d matrices are formed once per distribution.

Gradient layouts (``GradientEstimate.grad`` and ``score``):

* ``loc``: the shape of loc.
* ``scale_tril``: a (d, d) array; entry (i, j), i >= j, is the derivative
  with respect to L_ij; the entries above the diagonal are 0 (they are not
  parameters).
* ``covariance_matrix`` / ``precision_matrix``: the *symmetric* gradient G
  (a symmetric (d, d) array), the convention of torch's autograd through a
  Cholesky factorisation: for every symmetric perturbation E,
  d/dt E[f](Sigma + t E) at t = 0 equals sum_ij G_ij E_ij.  So G_ii is the
  derivative with respect to the diagonal entry, and for i != j, G_ij is
  half the derivative along the direction that moves Sigma_ij and Sigma_ji
  together.  (For log p itself, G = (w w^T - Sigma^-1) / 2 with
  w = Sigma^-1 (x - loc); for a precision matrix Lambda,
  G = (Sigma - r r^T) / 2 with r = x - loc.)
* ``cov_factor``: (d, r), ``cov_diag``: (d,), plain partial derivatives.
"""
from __future__ import annotations

from typing import Any

import math

import numpy as np
from scipy.linalg import blas, lapack

from .. import _docs
from .. import _kernels as K
from .. import _validation as V
from .. import _vr
from ._base import Distribution, Support

# term types of the family score kernels (_kernels_multivariate.pxi)
_MV_LOC, _MV_TRIL, _MV_COV, _MV_PREC, _MV_FACTOR, _MV_DIAG = range(6)

_MATRICES = ("covariance_matrix", "precision_matrix", "scale_tril")


def _readonly(a: Any) -> Any:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _loc(owner: Any, loc: Any) -> Any:
    loc = V.param("loc", loc, "real", owner=owner)
    if loc.ndim < 1:
        raise ValueError(f"{owner}: loc must be a vector (shape (..., d)), got a scalar")
    if loc.shape[-1] < 1:
        raise ValueError(f"{owner}: loc must have at least one coordinate, got shape "
                         f"{loc.shape}")
    return loc


def _square(owner: Any, name: Any, value: Any, d: Any) -> Any:
    arr = V.as_real_array(name, value, owner=owner)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{owner}: {name} must be a square (d, d) matrix, got shape "
                         f"{arr.shape}")
    if arr.shape[0] != d:
        raise ValueError(f"{owner}: {name} must have shape ({d}, {d}) to match loc's last "
                         f"axis (d = {d}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{owner}: {name} must be finite")
    return np.array(arr, dtype=np.float64)


def _cholesky(owner: Any, name: Any, a: Any) -> Any:
    """The lower Cholesky factor of the symmetric positive-definite a."""
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    asym = float(np.max(np.abs(a - a.T))) if a.size else 0.0
    if asym > 1e-10 * scale:
        i, j = np.unravel_index(int(np.argmax(np.abs(a - a.T))), a.shape)
        raise ValueError(f"{owner}: {name} must be symmetric: entries [{i}, {j}] = "
                         f"{float(a[i, j])!r} and [{j}, {i}] = {float(a[j, i])!r} differ")
    try:
        L = np.linalg.cholesky(0.5 * (a + a.T))
    except np.linalg.LinAlgError:
        w = float(np.linalg.eigvalsh(0.5 * (a + a.T)).min())
        raise ValueError(f"{owner}: {name} must be positive definite; its smallest "
                         f"eigenvalue is {w:.6g}") from None
    if not (np.diag(L) > 0).all() or not np.isfinite(L).all():
        raise ValueError(f"{owner}: {name} must be positive definite (its Cholesky factor "
                         "has a zero diagonal entry)")
    return L


def _check_tril(owner: Any, L: Any) -> Any:
    upper = np.triu(L, 1)
    if (upper != 0).any():
        i, j = np.argwhere(upper != 0)[0]
        raise ValueError(f"{owner}: scale_tril must be lower triangular: entry [{i}, {j}] "
                         f"above the diagonal is {float(L[i, j])!r}, not 0")
    diag = np.diag(L)
    if not (diag > 0).all():
        i = int(np.argmax(~(diag > 0)))
        raise ValueError(f"{owner}: scale_tril must have a positive diagonal (a Cholesky "
                         f"factor): scale_tril[{i}, {i}] = {float(diag[i])!r}")
    return L


def _tril_inverse(L: Any) -> Any:
    # LAPACK's triangular inverse (scipy.linalg.solve_triangular costs ~1 ms
    # of overhead per call, too much for a VI loop that builds q every step)
    Li, info = lapack.dtrtri(L, lower=1)
    return np.tril(Li)


class _Gaussian(Distribution):
    """Shared plumbing of the two Gaussian vector families."""

    kernel_blas = True  # the kernels call BLAS per chunk (_config.blas_single_threaded)

    event_ndim = 1
    support = Support("x any real vector", "real_vector", event_dim=1)

    def expand(self, batch_shape: Any) -> Any:
        """A new distribution with batch shape ``batch_shape``: loc broadcast
        to ``batch_shape + (d,)``; the matrix (or factor and diagonal), shared
        by the batch, is kept."""
        shape = self._expand_shape(batch_shape)
        kw = dict(self._constructor_args())
        kw["loc"] = np.array(np.broadcast_to(np.asarray(self.loc), shape + (self._d,)))
        return type(self)(**kw)
    has_mirror = True

    @property
    def event_shape(self) -> Any:
        return (self._d,)

    def _n_units(self) -> Any:
        return int(np.prod(self.batch_shape, dtype=np.int64))

    def _loc_terms(self) -> Any:
        U, d = self._n_units(), self._d
        idx = np.arange(U * d, dtype=np.int64)
        return ("loc", K.SK_FAMILY, float(_MV_LOC), (idx % d).astype(float), 0.0, idx, idx)

    def _matrix_terms(self, name: Any, typ: Any, elem: Any, ii: Any, jj: Any) -> Any:
        """Terms of a matrix parameter shared by every unit: element elem
        (flat index into the parameter) with indices (ii, jj), one term per
        unit reading the unit's coordinate ii."""
        U, d = self._n_units(), self._d
        units = np.repeat(np.arange(U, dtype=np.int64), elem.size)
        return (name, K.SK_FAMILY, float(typ), np.tile(ii, U).astype(float),
                np.tile(jj, U).astype(float), np.tile(elem, U), units * d + np.tile(ii, U))

    def _in_support(self, x: Any) -> Any:
        return np.ones(x.shape[:-1], dtype=bool)

    def _draw_broadcast_loc(self) -> Any:
        return np.broadcast_to(self.loc, self.batch_shape + (self._d,)).reshape(-1, self._d)

    # moments for the base class's mean / variance / stddev properties
    def _mean(self) -> Any:
        return self.loc

    def _variance(self) -> Any:
        """Var[x_c]: the covariance's diagonal."""
        return np.diag(self.covariance_matrix)

    def mirror(self, x: Any) -> Any:
        """The antithetic partner 2 loc - x (the family is symmetric about loc)."""
        return 2.0 * np.asarray(self.loc) - x

    def _log_prob(self, x: Any) -> Any:
        """log N(x; loc, Sigma) from the squared Mahalanobis distances and
        log det(Sigma) / 2."""
        d = self._d
        r = (x - self.loc).reshape(-1, d)
        lp = -0.5 * self._mahalanobis2(r) - self._logdet_half() - 0.5 * d * math.log(2 * math.pi)
        return lp.reshape(x.shape[:-1])

    def _logdet_half(self) -> Any:
        return float(np.sum(np.log(np.diag(self._L))))

    def _entropy(self) -> Any:
        """Differential entropy (the same for every batch element)."""
        return 0.5 * self._d * (1.0 + math.log(2 * math.pi)) + self._logdet_half()


class MultivariateNormal(_Gaussian):
    """MultivariateNormal(loc, covariance_matrix=None, precision_matrix=None,
    scale_tril=None): the d-dimensional normal with mean loc and covariance
    Sigma, given by exactly one of its covariance matrix, its precision
    matrix Sigma^-1 or its lower Cholesky factor L (Sigma = L L^T, positive
    diagonal).  loc has shape (..., d) (leading batch dimensions: independent
    vectors sharing the matrix); the matrix has shape (d, d).

    Gradients (``score_grad``, ``score``) are taken w.r.t. loc and the matrix
    that was given: for ``scale_tril`` a (d, d) array with zeros above the
    diagonal; for ``covariance_matrix`` / ``precision_matrix`` the symmetric
    gradient (see the module docstring of ``distributions._multivariate``:
    the convention of torch's autograd).

    Parameters
    ----------
    loc : array_like, shape (..., d)
        The mean (finite), d >= 1.
    covariance_matrix : array_like, shape (d, d), optional
        Sigma, symmetric positive definite.
    precision_matrix : array_like, shape (d, d), optional
        Sigma^-1, symmetric positive definite.
    scale_tril : array_like, shape (d, d), optional
        L, lower triangular with a positive diagonal.  Give exactly one of
        the three matrices.

    Raises
    ------
    ValueError
        Not exactly one of the three matrices, a matrix whose shape does not
        match ``loc``'s last axis, or one that is not positive definite (a
        non-positive diagonal of ``scale_tril``).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> q = mc.MultivariateNormal(np.zeros(2), scale_tril=L)
    >>> q.sample(1000, rng=0).shape
    (1000, 2)
    >>> res = mc.score_grad(lambda x: x[:, 0] * x[:, 1], q, 10_000, rng=0)  # E = L00 L10
    >>> res.grad["scale_tril"].shape
    (2, 2)
    >>> bool(abs(res.grad["scale_tril"][1, 0] - 1.0) < 5 * res.stderr["scale_tril"][1, 0])
    True
    """

    family = K.MC_MULTIVARIATE_NORMAL
    arg_constraints = {"loc": "real_vector", "covariance_matrix": "positive_definite",
                       "precision_matrix": "positive_definite",
                       "scale_tril": "lower_cholesky"}
    has_rsample = True  # through scale_tril (pathwise_spec)
    def __init__(self, loc: Any, covariance_matrix: Any = None, precision_matrix: Any = None,
                 scale_tril: Any = None) -> None:
        self._kernel = None
        owner = type(self).__name__
        given = {k: v for k, v in zip(_MATRICES, (covariance_matrix, precision_matrix,
                                                    scale_tril)) if v is not None}
        if len(given) != 1:
            raise ValueError(f"{owner}: give exactly one of covariance_matrix, "
                             f"precision_matrix or scale_tril, got "
                             f"{', '.join(given) if given else 'none'}")
        (name, value), = given.items()
        loc = _loc(owner, loc)
        d = loc.shape[-1]
        a = _square(owner, name, value, d)
        if name == "scale_tril":
            L = _check_tril(owner, a)
            Li = _tril_inverse(L)
            P = Li.T @ Li
            S = L @ L.T
        elif name == "covariance_matrix":
            L = _cholesky(owner, name, a)
            Li = _tril_inverse(L)
            P = Li.T @ Li
            S = a
        else:
            Lp = _cholesky(owner, name, a)
            Lpi = _tril_inverse(Lp)
            S = Lpi.T @ Lpi
            S = 0.5 * (S + S.T)
            L = _cholesky(owner, "the inverse of precision_matrix", S)
            Li = _tril_inverse(L)
            P = a
        self._d = d
        self._given = name
        self._L, self._Li = _readonly(L), _readonly(Li)
        self._Lf = np.asfortranarray(L)
        self._P, self._S = _readonly(0.5 * (P + P.T)), _readonly(S)
        self.batch_shape = loc.shape[:-1]
        self._params = {"loc": loc, name: _readonly(a)}

    @property
    def loc(self) -> Any:
        return self._params["loc"]

    @property
    def scale_tril(self) -> Any:
        """The lower Cholesky factor L of the covariance (Sigma = L L^T)."""
        return self._L

    @property
    def covariance_matrix(self) -> Any:
        return self._S

    @property
    def precision_matrix(self) -> Any:
        return self._P

    def _mahalanobis2(self, r: Any) -> Any:
        # rows z = L^-1 r by one triangular solve (BLAS dtrsm: Z L^T = R), |z|^2
        z = blas.dtrsm(1.0, self._Lf, np.ascontiguousarray(r), side=1, lower=1, trans_a=1)
        return np.einsum("ij,ij->i", z, z)

    def _draw_params(self) -> Any:
        d = self._d
        loc = self._draw_broadcast_loc()
        mats = np.concatenate([m.ravel() for m in (self._L, self._P, self._Li, self._S)])
        U = loc.shape[0]
        p0 = np.concatenate([np.full((U, 1), float(d)), loc, np.broadcast_to(mats, (U, mats.size))],
                            axis=1)
        return p0, np.zeros((U, 0))

    def _terms(self) -> Any:
        d = self._d
        ii, jj = np.indices((d, d))
        if self._given == "scale_tril":
            keep = ii >= jj
            typ = _MV_TRIL
        else:
            keep = np.ones((d, d), dtype=bool)
            typ = _MV_COV if self._given == "covariance_matrix" else _MV_PREC
        elem = np.flatnonzero(keep.ravel()).astype(np.int64)
        return [self._loc_terms(),
                self._matrix_terms(self._given, typ, elem, ii.ravel()[elem], jj.ravel()[elem])]

    def vi_transforms(self) -> Any:
        if self._given != "scale_tril":
            raise ValueError("vi.fit optimises a MultivariateNormal through its Cholesky "
                             "factor (unconstrained: the lower triangle with a log diagonal); "
                             f"build q with scale_tril= instead of {self._given}=")
        return {"loc": "identity", "scale_tril": "tril_log_diag"}

    def _require_tril(self, what: Any) -> Any:
        if self._given != "scale_tril":
            raise ValueError(f"{what} differentiates a MultivariateNormal through its Cholesky "
                             f"factor; build it with scale_tril= instead of {self._given}= "
                             "(or use score_grad, which supports every parameterisation)")

    def pathwise_spec(self) -> Any:
        """x = loc + L eps: dx_c/dloc_c = 1 (TK_ONE) and dx_i/dL_ij = eps_j,
        the draw's own noise recovered from x by row j of L^-1
        (TK_MVN_NOISE, an explicit term list: a = j, b = the unit's first
        column; parameters in pathwise_params).

        Raises
        ------
        ValueError
            When the matrix was not given as ``scale_tril`` (pathwise_grad
            differentiates through L).

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.MultivariateNormal(np.zeros(2), scale_tril=np.eye(2))
        >>> [row[0] for row in q.pathwise_spec()][:1]
        ['loc']
        """
        self._require_tril("pathwise_grad")
        U, d = self._n_units(), self._d
        ii, jj = np.tril_indices(d)
        units = np.repeat(np.arange(U, dtype=np.int64), ii.size)
        return [("loc", _vr.TK_ONE, 0.0, 0.0),
                ("scale_tril", _vr.TK_MVN_NOISE, np.tile(jj, U).astype(float),
                 (units * d).astype(float), np.tile(ii * d + jj, U), units * d + np.tile(ii, U))]

    def pathwise_params(self) -> Any:
        """[d, L^-1 (row-major), loc of every unit] for TK_MVN_NOISE.

        Returns
        -------
        numpy.ndarray
            ``[d, L^-1 (row-major), loc of every unit]``, float64.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> q = mc.MultivariateNormal(np.zeros(2), scale_tril=2 * np.eye(2))
        >>> p = q.pathwise_params()
        >>> int(p[0]), p[1:5].reshape(2, 2).tolist() == [[0.5, 0.0], [0.0, 0.5]]
        (2, True)
        """
        return np.concatenate([[float(self._d)], self._Li.ravel(),
                               self._draw_broadcast_loc().ravel()])


@_docs.raises_bad_parameters(
    "A ``cov_factor`` or ``cov_diag`` of the wrong shape, non-finite values or a non-positive"
    " ``cov_diag``")
class LowRankMultivariateNormal(_Gaussian):
    """LowRankMultivariateNormal(loc, cov_factor, cov_diag): the normal with
    mean loc and covariance W W^T + diag(D), W = cov_factor of shape (d, r),
    D = cov_diag of shape (d,), positive.  Draws cost O(d r): x = loc + W u +
    sqrt(D) e.  Gradients w.r.t. loc, cov_factor ((d, r)) and cov_diag ((d,)),
    plain partial derivatives.

    Parameters
    ----------
    loc : array_like, shape (d,)
        The mean (finite).
    cov_factor : array_like, shape (d, r)
        W of the covariance W W^T + diag(D) (finite).
    cov_diag : array_like, shape (d,)
        D, positive.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.LowRankMultivariateNormal(np.zeros(3), np.ones((3, 1)), np.ones(3))
    >>> q.sample(2, rng=0).shape, bool(np.allclose(q.variance, 2.0))
    ((2, 3), True)
    """

    family = K.MC_LOWRANK_MULTIVARIATE_NORMAL
    arg_constraints = {"loc": "real_vector", "cov_factor": "real", "cov_diag": "positive"}

    def __init__(self, loc: Any, cov_factor: Any, cov_diag: Any) -> None:
        self._kernel = None
        owner = type(self).__name__
        loc = _loc(owner, loc)
        d = loc.shape[-1]
        W = V.as_real_array("cov_factor", cov_factor, owner=owner)
        if W.ndim != 2 or W.shape[0] != d or W.shape[1] < 1:
            raise ValueError(f"{owner}: cov_factor must have shape (d, r) = ({d}, r) with "
                             f"r >= 1 (d from loc), got {W.shape}")
        if not np.isfinite(W).all():
            raise ValueError(f"{owner}: cov_factor must be finite")
        D = V.param("cov_diag", cov_diag, "positive", owner=owner)
        if D.shape != (d,):
            raise ValueError(f"{owner}: cov_diag must have shape ({d},) to match loc, got "
                             f"{D.shape}")
        W = np.array(W, dtype=np.float64)
        r = W.shape[1]
        # Woodbury: Sigma^-1 = D^-1 - D^-1 W C^-1 W^T D^-1, C = I + W^T D^-1 W
        with np.errstate(over="ignore", invalid="ignore"):
            Wd = W / D[:, None]
            C = np.eye(r) + W.T @ Wd
        if not (np.isfinite(Wd).all() and np.isfinite(C).all()):
            raise ValueError(f"{owner}: cov_factor / cov_diag too large: the covariance "
                             f"cov_factor @ cov_factor.T + diag(cov_diag) overflows float64")
        Lc = np.linalg.cholesky(C)
        T = _tril_inverse(Lc) @ Wd.T  # (r, d): Lc^-1 W^T D^-1
        P = np.diag(1.0 / D) - T.T @ T
        self._d, self._r = d, r
        self._P = _readonly(0.5 * (P + P.T))
        self._logdet = float(np.sum(np.log(D)) + 2.0 * np.sum(np.log(np.diag(Lc))))
        self._W, self._D, self._T = W, D, T
        self.batch_shape = loc.shape[:-1]
        self._params = {"loc": loc, "cov_factor": _readonly(W), "cov_diag": _readonly(D)}

    @property
    def loc(self) -> Any:
        return self._params["loc"]

    @property
    def cov_factor(self) -> Any:
        return self._params["cov_factor"]

    @property
    def cov_diag(self) -> Any:
        return self._params["cov_diag"]

    @property
    def covariance_matrix(self) -> Any:
        return _readonly(self._W @ self._W.T + np.diag(self._D))

    @property
    def precision_matrix(self) -> Any:
        return self._P

    @property
    def scale_tril(self) -> Any:
        return _readonly(np.linalg.cholesky(self.covariance_matrix))

    def _logdet_half(self) -> Any:
        return 0.5 * self._logdet

    def _mahalanobis2(self, r: Any) -> Any:
        # r^T Sigma^-1 r by Woodbury: |r|^2_D - |T r|^2 (T = Lc^-1 W^T D^-1)
        return np.einsum("ij,ij->i", r, r / self._D) - np.einsum("ij,ij->i", r @ self._T.T,
                                                                 r @ self._T.T)

    def _draw_params(self) -> Any:
        d, r = self._d, self._r
        loc = self._draw_broadcast_loc()
        M = self._P @ self._W
        mats = np.concatenate([self._W.ravel(), np.sqrt(self._D), self._P.ravel(), M.ravel(),
                               self._T.ravel()])
        U = loc.shape[0]
        p0 = np.concatenate([np.tile([float(d), float(r)], (U, 1)), loc,
                             np.broadcast_to(mats, (U, mats.size))], axis=1)
        return p0, np.zeros((U, 0))

    def _terms(self) -> Any:
        d, r = self._d, self._r
        ii, kk = np.indices((d, r))
        ar = np.arange(d, dtype=np.int64)
        return [self._loc_terms(),
                self._matrix_terms("cov_factor", _MV_FACTOR, np.arange(d * r, dtype=np.int64),
                                   ii.ravel(), kk.ravel()),
                self._matrix_terms("cov_diag", _MV_DIAG, ar, ar, np.zeros(d, np.int64))]

    def vi_transforms(self) -> Any:
        return {"loc": "identity", "cov_factor": "identity", "cov_diag": "log"}
