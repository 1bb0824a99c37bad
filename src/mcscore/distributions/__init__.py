"""Exponential-family distributions, named and parameterised as in
``torch.distributions``.

Each distribution knows how to

* ``sample(n, rng)`` -- ``n`` draws, shape ``(n, *draw_shape)``;
* ``log_prob(x)`` -- log density / mass, shape ``(m, *batch_shape)``;
* ``score(x)`` -- per-draw gradients of the log density of the whole draw
  with respect to each parameter the user passed, a dict of arrays shaped
  ``(m, *param_shape)``;

and describes itself to the kernels as a table of *score terms*: the score
with respect to parameter element q is a sum of terms, each reading one draw
coordinate c (``a*t(x_c) + b``, ``a*(t(x_c) - c0)^2 + b`` with t one of x,
log x, log(1-x), ``a*sign(x_c - c0) + b``, ``a*|x_c - c0| + b``, ...: the
``SK_*`` kinds of ``_kernels.pxd``).  The terms are an explicit list of
(parameter element, draw coordinate) pairs: by default the coordinates the
element reaches by broadcasting, or any list a family gives (a matrix
parameter).  One evaluator in the kernels computes every score, and
``score()`` calls it too, so they cannot disagree.  A family draws with its
fill function in ``_kernels_families.pxi`` (registered under its ``family``
code);
see docs/design.md, "Adding a family".

A family also declares its optional capabilities (the ``has_*`` flags and
``mean_tangents``, ``mirror``, ``pathwise_spec``, ``vi_transforms``,
``relaxation``); estimators ask for one (``require``) and get a clear error
naming the families that have it.

Each family is one class holding all it knows; the package holds them by
group: ``_base`` (Distribution, the shared machinery), ``_location_scale``
(Normal, LogNormal, Laplace, Gumbel, Cauchy, StudentT, HalfNormal,
HalfCauchy), ``_gamma`` (Exponential, Gamma, Chi2, InverseGamma, Weibull,
Beta), ``_bounded`` (Uniform, VonMises), ``_discrete``
(Poisson, Bernoulli, Binomial, Geometric, NegativeBinomial) and
``_categorical`` (Categorical, Multinomial, Dirichlet, OneHotCategorical).  Every public name
is imported from here (``mcscore.distributions.Normal``), and the classes
say they live here, so that pickles and reprs name this module.
"""
from ._base import Distribution, Support, inherit_sections, register_families
from ._base import index_map as index_map  # re-exported for the estimators
from ._categorical import Categorical, Dirichlet, Multinomial, OneHotCategorical
from ._location_scale import (
    Cauchy, Gumbel, HalfCauchy, HalfNormal, Laplace, LogNormal, Normal, StudentT,
)
from ._gamma import Beta, Chi2, Exponential, Gamma, InverseGamma, Weibull
from ._bounded import Uniform, VonMises
from ._joint import Joint, JointDraws
from ._multivariate import LowRankMultivariateNormal, MultivariateNormal
from ._discrete import (
    GEOMETRIC_PROBS_MIN, POISSON_RATE_MAX, Bernoulli, Binomial, Geometric,
    NegativeBinomial, Poisson,
)

__all__ = [
    "Distribution",
    "Normal",
    "LogNormal",
    "Exponential",
    "Gamma",
    "Beta",
    "Poisson",
    "Bernoulli",
    "Binomial",
    "Geometric",
    "NegativeBinomial",
    "Categorical",
    "Multinomial",
    "Dirichlet",
    "Laplace",
    "HalfNormal",
    "Chi2",
    "InverseGamma",
    "Gumbel",
    "Weibull",
    "MultivariateNormal",
    "LowRankMultivariateNormal",
    "Uniform",
    "StudentT",
    "Cauchy",
    "HalfCauchy",
    "VonMises",
    "OneHotCategorical",
    "Support",
    "FAMILIES",
    "Joint",
    "JointDraws",
]

FAMILIES = (
    Normal, LogNormal, Exponential, Gamma, Beta, Poisson, Bernoulli, Binomial,
    Geometric, NegativeBinomial, Categorical, Multinomial, Dirichlet, Laplace,
    HalfNormal, Chi2, InverseGamma, Gumbel, Weibull, MultivariateNormal,
    LowRankMultivariateNormal, Uniform, StudentT, Cauchy, HalfCauchy, VonMises,
    OneHotCategorical,
)
register_families(FAMILIES)

for _cls in (Distribution,) + FAMILIES:
    _cls.__module__ = __name__
    # the families' cdf, icdf, mirror, ... show Distribution's Parameters,
    # Returns and Raises next to their own summary and Examples
    inherit_sections(_cls)
del _cls
Joint.__module__ = JointDraws.__module__ = __name__
