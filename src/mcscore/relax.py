"""RELAX (Grathwohl et al. 2018): a learned control variate for Bernoulli
and Categorical, :func:`relax_grad`; surrogates (:class:`NumpySurrogate`,
:class:`RebarSurrogate`, :class:`TorchSurrogate`), their online training
on the estimator's variance (:func:`train_surrogate`), and the
gradient-based tuning of REBAR's temperature and scale
(:func:`tune_rebar`).

In logit space (Bernoulli: z = logit + logistic noise, b = [z > 0];
Categorical: z = log pi + Gumbel noise, b = argmax z), with z~ a draw of z
given b (the conditional relaxation of REBAR) and c_phi a differentiable
surrogate of f on z,

    g = (f(b) - c_phi(z~)) d log p(b) / d theta + d c_phi(z) / d theta
        - d c_phi(z~) / d theta

(the derivatives of c through the reparameterised z(theta) and
z~(theta)).  The last two terms have the mean of c_phi(z~) times the score,
so g is unbiased for every phi.  phi is trained to minimise E[|g|^2] (the
estimator's variance plus a constant): after each call's estimate (with phi
frozen, so the call's result is a function of its seed and is the same for
any n_threads and on Dask), one or more gradient steps on phi use a
training batch drawn from a child of the call's seed; the next call uses
the updated phi (online training in an optimisation loop).

The Jacobians, per draw (Categorical, raw logits l, pi = softmax(l)):

    dz_k / dl_j = [k = j] - pi_j
    z~_b = -log(-log v_b),  z~_k = -log(-log v_k / pi_k - log v_b)  (k != b)
    dz~_k / dl_j = w_k ([k = j] - pi_j),  w_k = -log v_k / (pi_k A_k), w_b = 0,
    A_k = -log v_k / pi_k - log v_b;

(Bernoulli, logit l, p = sigmoid(l)): dz/dl = 1; z~ = l + logit(u'),
u' = 1 - p + v p (b = 1) or v (1 - p) (b = 0), dz~/dl = 1 + (du'/dp) p (1 - p)
/ (u' (1 - u')).  probs are reached by the chain rule (d/dp = d/dl / (p q)
for Bernoulli, d/dv_j = d/dl_j / v_j for unnormalised Categorical probs).
"""
from __future__ import annotations

from typing import Any

import copy

import numpy as np
from scipy import special

from . import _docs
from . import _engine as E
from . import _validation as V
from ._features import FeatureJob, run_features
from .distributions import Bernoulli, Categorical
from .result import GradientEstimate

__all__ = ["relax_grad", "NumpySurrogate", "RebarSurrogate", "TorchSurrogate",
           "train_surrogate", "tune_rebar"]


# ---------------------------------------------------------------------------
# the relaxation: draws, Jacobians and the estimator's terms
# ---------------------------------------------------------------------------

class _Relax:
    """The logit-space relaxation of a Bernoulli / Categorical."""

    def __init__(self, dist: Any) -> None:
        E.check_distribution(dist)
        if type(dist) not in (Bernoulli, Categorical):
            raise ValueError(f"relax_grad supports Bernoulli and Categorical; got "
                             f"{type(dist).__name__}")
        E.check_differentiable(dist)
        dist._kernel_dist()
        self.dist = dist
        self.cat = isinstance(dist, Categorical)
        if self.cat:
            self.K = dist.n_categories
            self.U = dist.draw_size
            self.pi = dist.probs.reshape(self.U, self.K)
            self.logpi = np.log(self.pi)
            self.zshape = dist.draw_shape + (self.K,)
            v = dist._params[dist._which].reshape(self.U, self.K)
            self.conv = 1.0 / v if dist._which == "probs" else None
        else:
            p, q = dist._pq()
            self.U, self.K = dist.draw_size, 1
            self.p = np.broadcast_to(p, dist.draw_shape).ravel()
            self.q = np.broadcast_to(q, dist.draw_shape).ravel()
            self.lg = np.log(self.p) - np.log(self.q)
            self.zshape = dist.draw_shape
            self.conv = 1.0 / (self.p * self.q) if dist._which == "probs" else None
        self.P = self.U * self.K

    def sample(self, gen: Any, m: Any) -> Any:
        """z, z~, the discrete points, the score (m, P) in logit space and
        the Jacobian weights of z~."""
        U, K = self.U, self.K
        u = gen.random((m, U, K) if self.cat else (m, U))
        v = gen.random((m, U, K) if self.cat else (m, U))
        if self.cat:
            g = -np.log(-np.log(u))
            z = self.logpi + g
            b = z.argmax(-1)
            hot = (np.arange(K) == b[..., None]).astype(float)
            lv = np.log(v)
            lvb = np.take_along_axis(lv, b[..., None], -1)
            A = -lv / self.pi - lvb
            zt = np.where(hot > 0, -np.log(-lvb), -np.log(A))
            w = np.where(hot > 0, 0.0, -lv / (self.pi * A))
            return {"z": z, "zt": zt, "b": hot, "score": (hot - self.pi).reshape(m, -1),
                    "w": w}
        z = self.lg + special.logit(u)
        b = (z > 0).astype(float)
        p, q = self.p, self.q
        up = np.where(b > 0, q + v * p, v * q)
        dup = np.where(b > 0, v - 1.0, -v)
        zt = self.lg + special.logit(up)
        w = 1.0 + dup * p * q / (up * (1.0 - up))
        return {"z": z, "zt": zt, "b": b, "score": b - p, "w": w}

    def terms(self, mat: Any, fb: Any, ct: Any, gz: Any, gzt: Any, sumk: Any) -> Any:
        """The RELAX terms (m, P) in logit space from f(b), c(z~) and the
        surrogate's input gradients at z and z~ (NumPy or torch arrays;
        sumk sums the last axis keeping it)."""
        m = len(fb)
        score = mat["score"]
        if self.cat:
            pi, w = mat["pi"], mat["w"]
            gz = gz.reshape(m, self.U, self.K)
            gzt = gzt.reshape(m, self.U, self.K) * w
            d = (gz - pi * sumk(gz)) - (gzt - pi * sumk(gzt))
            d = d.reshape(m, self.P)
        else:
            d = gz.reshape(m, self.P) - gzt.reshape(m, self.P) * mat["w"]
        return (fb - ct).reshape(m, 1) * score + d

    def to_params(self, g: Any) -> Any:
        """Logit-space terms -> the distribution's parameterisation."""
        if self.conv is None:
            return g
        return g * self.conv.reshape(1, -1)

    def points(self, mat: Any) -> Any:
        """The discrete points in the form f takes: 0/1 (m, *batch) for
        Bernoulli, one-hot (m, *batch, K) for Categorical."""
        m = len(mat["b"])
        return mat["b"].reshape((m,) + self.zshape)


def _npsum(a: Any) -> Any:
    return a.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------
# surrogates
# ---------------------------------------------------------------------------

class _Adam:
    def __init__(self, lr: Any) -> None:
        self.lr, self.t, self.m, self.v = lr, 0, 0.0, 0.0

    def step(self, phi: Any, g: Any) -> Any:
        self.t += 1
        # an overflow here is reported by the caller's finiteness check
        with np.errstate(over="ignore", invalid="ignore"):
            self.m = 0.9 * self.m + 0.1 * g
            self.v = 0.999 * self.v + 0.001 * g * g
            mh = self.m / (1 - 0.9**self.t)
            vh = self.v / (1 - 0.999**self.t)
            return phi - self.lr * mh / (np.sqrt(vh) + 1e-8)


class NumpySurrogate:
    """A user-supplied differentiable surrogate c_phi(z) as NumPy callables.

    Parameters
    ----------
    value : ``value(z, phi) -> (m,)``, z of shape ``(m, *batch_shape)``
        (Bernoulli) or ``(m, *batch_shape, K)`` (Categorical), in logit space.
    grad_z : ``grad_z(z, phi) -> z.shape``, d c / d z.
    grad_phi : ``grad_phi(z, phi) -> (m, len(phi))``, d c / d phi.
    phi : initial parameters (1-d array).
    lr : Adam's step size for the training on the variance.
    fd_step : relative step of the central differences of grad_z in phi
        (the mixed derivative d^2 c / dz dphi that the variance's gradient
        needs; the estimator stays unbiased whatever they give).

    Raises
    ------
    TypeError
        A callable argument that is not callable.
    ValueError
        ``phi`` not 1-d or not finite, ``lr`` or ``fd_step`` not positive.

    Examples
    --------
    %(numpy_surrogate)s
    >>> q = mc.Bernoulli(probs=np.full(3, 0.3))
    >>> res = mc.relax_grad(lambda b: b.sum(axis=-1), q, 2000, surrogate=s, rng=0)
    >>> bool(np.all(np.abs(res.grad["probs"] - 1.0) < 5 * res.stderr["probs"]))
    True
    """

    def __init__(self, value: Any, grad_z: Any, grad_phi: Any, phi: Any, *, lr: Any = 0.01,
                 fd_step: Any = 1e-5) -> None:
        self.value_fn = E.check_callable("value", value)
        self.grad_z_fn = E.check_callable("grad_z", grad_z)
        self.grad_phi_fn = E.check_callable("grad_phi", grad_phi)
        phi = V.check("phi", V.as_real_array("phi", phi), "real")
        if phi.ndim > 1:
            raise ValueError(f"phi must be a 1-d array, got shape {phi.shape}")
        self.phi = phi.ravel().copy()
        self.lr = V.positive_real("lr", lr)
        self.fd_step = V.positive_real("fd_step", fd_step)
        self._opt = _Adam(self.lr)

    def value(self, z: Any) -> Any:
        """The surrogate c_phi(z) at the current phi.

        Parameters
        ----------
        z : array_like
            Logit-space points ``(m, *batch_shape)`` (or with the category axis).

        Returns
        -------
        numpy.ndarray, shape (m,)

        Raises
        ------
        TypeError
            From the user's ``value`` for inputs it does not accept.

        Examples
        --------
        %(numpy_surrogate)s
        >>> s.value(np.ones((2, 3)))
        array([1.5, 1.5])
        """
        return np.asarray(self.value_fn(z, self.phi), float)

    def grad(self, z: Any) -> Any:
        """d c_phi / d z at the current phi.

        %(grad_io)s

        Raises
        ------
        TypeError
            From the user's ``grad_z`` for inputs it does not accept.

        Examples
        --------
        %(numpy_surrogate)s
        >>> s.grad(np.ones((1, 3)))
        array([[0.5, 0.5, 0.5]])
        """
        return np.asarray(self.grad_z_fn(z, self.phi), float)

    def _value_at(self, z: Any, phi: Any) -> Any:
        return E.call_values(lambda zz: self.value_fn(zz, phi), z, None, len(z), name="value")

    def _grad_at(self, z: Any, phi: Any) -> Any:
        g = E.call_grad(lambda zz: self.grad_z_fn(zz, phi), z, None, len(z), name="grad_z")
        return g.reshape(np.shape(z))

    def step(self, rx: Any, mat: Any, fb: Any) -> Any:
        """One Adam step on mean ``|g|^2`` over the batch; returns that loss.

        %(step_io)s

        Raises
        ------
        ValueError
            ``grad_phi`` returning the wrong shape.
        FloatingPointError
            A step that overflows (scale f down or lower ``lr``).

        Examples
        --------
        %(numpy_surrogate)s
        %(train_example)s
        (3,)
        """
        z, zt = mat["z"], mat["zt"]
        m = len(fb)
        ct = self._value_at(zt, self.phi)
        g = rx.terms(mat, fb, ct, self._grad_at(z, self.phi), self._grad_at(zt, self.phi), _npsum)
        dct = V.check("grad_phi's result", V.as_real_array("grad_phi's result",
                                                          self.grad_phi_fn(zt, self.phi)), "real")
        if dct.size != m * self.phi.size:
            raise ValueError(f"grad_phi returned shape {dct.shape} instead of "
                             f"({m}, {self.phi.size}) (draws, len(phi))")
        dct = dct.reshape(m, -1)
        grad = np.empty_like(self.phi)
        score = mat["score"]
        for k in range(self.phi.size):
            h = self.fd_step * max(1.0, abs(self.phi[k]))
            e = np.zeros_like(self.phi)
            e[k] = h
            dz = (self._grad_at(z, self.phi + e) - self._grad_at(z, self.phi - e)) / (2 * h)
            dzt = (self._grad_at(zt, self.phi + e) - self._grad_at(zt, self.phi - e)) / (2 * h)
            # d g / d phi_k: -dc(z~)/dphi_k s + the input-gradient terms' derivative
            dg = rx.terms(mat, np.zeros(m), np.zeros(m), dz, dzt, _npsum)
            # a diverging surrogate overflows here; the finiteness check below reports it
            with np.errstate(over="ignore", invalid="ignore"):
                dg = dg - dct[:, k:k + 1] * score
                grad[k] = 2 * float((g * dg).sum(1).mean())
        phi = self._opt.step(self.phi, grad)
        with np.errstate(over="ignore", invalid="ignore"):
            loss = float((g * g).sum(1).mean())
        if not (np.isfinite(phi).all() and np.isfinite(loss)):
            raise FloatingPointError(
                f"the surrogate's training step overflowed (loss {loss}, phi {phi}): scale f "
                f"down or lower lr (now {self.lr})")
        self.phi = phi
        return loss

    def frozen(self) -> Any:
        """A copy with the current phi, for an estimate.

        Returns
        -------
        NumpySurrogate
            A shallow copy with its own ``phi`` (training the original leaves it unchanged).

        Examples
        --------
        %(numpy_surrogate)s
        >>> c = s.frozen()
        >>> s.phi[0] = 2.0
        >>> float(c.phi[0])
        0.5
        """
        c = copy.copy(self)
        c.phi = self.phi.copy()
        return c


def _sig(t: Any) -> Any:
    return special.expit(t)


class RebarSurrogate(NumpySurrogate):
    """REBAR's control variate c(z) = eta f(sigma(z / temperature))
    (Bernoulli) or eta f(softmax(z / temperature)) (Categorical), with
    phi = (log temperature, eta) trained on the variance by gradient (as in
    the REBAR paper).  f and grad_f take relaxed points (see rebar_grad).

    Parameters
    ----------
    f, grad_f : callable
        f at relaxed points and its gradient.
    temperature : float, default 0.5
        The initial temperature (> 0).
    eta : float, default 1.0
        The initial scale (finite).
    categorical : bool, optional
        True for a Categorical (softmax relaxation), else Bernoulli.
    lr : float, default 0.02
        Adam's step size (> 0).

    Raises
    ------
    TypeError
        ``f`` or ``grad_f`` not callable.
    ValueError
        A temperature that is not positive, a non-finite eta.

    Examples
    --------
    >>> import mcscore as mc
    >>> s = mc.RebarSurrogate(lambda y: y.sum(axis=-1), lambda y: 0 * y + 1.0, temperature=0.25)
    >>> s.temperature, s.eta
    (0.25, 1.0)
    """

    def __init__(self, f: Any, grad_f: Any, *, temperature: Any = 0.5, eta: Any = 1.0,
                 categorical: Any = None, lr: Any = 0.02) -> None:
        self.f = E.check_callable("f", f)
        self.grad_f = E.check_callable("grad_f", grad_f)
        self.categorical = categorical
        phi = np.array([np.log(V.positive_real("temperature", temperature)),
                        V.scalar("eta", eta, "real")])
        super().__init__(self._value, self._grad_z, self._grad_phi, phi, lr=lr)

    @property
    def temperature(self) -> Any:
        return float(np.exp(self.phi[0]))

    @property
    def eta(self) -> Any:
        return float(self.phi[1])

    def _relaxed(self, z: Any, phi: Any) -> Any:
        t = z / np.exp(phi[0])
        if self.categorical:
            return special.softmax(t, axis=-1), t
        return _sig(t), t

    def _f(self, y: Any) -> Any:
        return E.call_values(self.f, y, None, len(y))

    def _grad_f(self, y: Any) -> Any:
        return E.call_grad(self.grad_f, y, None, len(y)).reshape(y.shape)

    def _value(self, z: Any, phi: Any) -> Any:
        y, _ = self._relaxed(z, phi)
        return phi[1] * self._f(y)

    def _dy(self, y: Any, t: Any, g: Any) -> Any:
        """(d c / d t) for c = f(y(t)): the Jacobian of sigmoid / softmax
        applied to grad_f."""
        if self.categorical:
            return y * (g - (y * g).sum(-1, keepdims=True))
        return y * (1 - y) * g

    def _grad_z(self, z: Any, phi: Any) -> Any:
        y, t = self._relaxed(z, phi)
        g = self._grad_f(y)
        return phi[1] * self._dy(y, t, g) / np.exp(phi[0])

    def _grad_phi(self, z: Any, phi: Any) -> Any:
        y, t = self._relaxed(z, phi)
        m = len(z)
        fy = self._f(y)
        g = self._grad_f(y)
        dlog = (self._dy(y, t, g) * -t).reshape(m, -1).sum(1)  # dt/dlog(temp) = -t
        return np.stack([phi[1] * dlog, fy], 1)


class TorchSurrogate:
    """A small neural network surrogate c_phi(z) in PyTorch (imported when
    the object is made), trained by autograd on the variance.

    Parameters
    ----------
    input_size : int, the number of values of one z (batch size x K).
    module : torch.nn.Module, optional; default an MLP input_size -> hidden ->
        hidden -> 1 with tanh, its last layer zeroed (c = 0 at the start).
    hidden : int; lr : Adam's step size; seed : torch's seed for the
        default module's initialisation.

    Raises
    ------
    ImportError
        Without PyTorch.
    TypeError
        ``module`` not a ``torch.nn.Module``.
    ValueError
        ``input_size`` or ``hidden`` below 1, ``lr`` not positive.

    Examples
    --------
    %(torch_surrogate)s
    >>> s.value(np.zeros((4, 3))).tolist()              # the last layer starts at 0
    [0.0, 0.0, 0.0, 0.0]
    """

    def __init__(self, input_size: Any, *, module: Any = None, hidden: Any = 32, lr: Any = 0.01,
                 seed: Any = 0) -> None:
        import torch

        self.input_size = V.integer("input_size", input_size, minimum=1)
        if module is not None and not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if module is None:
            hidden = V.integer("hidden", hidden, minimum=1)
            gen = torch.Generator().manual_seed(int(seed))
            lin = [torch.nn.Linear(self.input_size, hidden), torch.nn.Linear(hidden, hidden),
                   torch.nn.Linear(hidden, 1)]
            with torch.no_grad():
                for layer in lin[:2]:
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen)
                                       / np.sqrt(layer.weight.shape[1]))
                    layer.bias.zero_()
                lin[2].weight.zero_()
                lin[2].bias.zero_()
            module = torch.nn.Sequential(lin[0], torch.nn.Tanh(), lin[1], torch.nn.Tanh(),
                                         lin[2])
        self.module = module.double()
        self.lr = V.positive_real("lr", lr)
        self._opt = torch.optim.Adam(self.module.parameters(), lr=self.lr)

    def _c(self, zt: Any) -> Any:
        return self.module(zt.reshape(len(zt), -1)).reshape(-1)

    def value(self, z: Any) -> Any:
        """The network's c(z), without gradient.

        Parameters
        ----------
        z : array_like
            Logit-space points ``(m, ...)`` with ``input_size`` values per point.

        Returns
        -------
        numpy.ndarray, shape (m,)

        %(raises_torch_size)s

        Examples
        --------
        %(torch_surrogate)s
        >>> s.value(np.ones((2, 3))).shape
        (2,)
        """
        import torch

        with torch.no_grad():
            return self._c(torch.as_tensor(np.asarray(z, float))).numpy().copy()

    def grad(self, z: Any) -> Any:
        """d c / d z by autograd.

        %(grad_io)s

        %(raises_torch_size)s

        Examples
        --------
        %(torch_surrogate)s
        >>> s.grad(np.ones((2, 3))).shape
        (2, 3)
        """
        import torch

        zt = torch.as_tensor(np.asarray(z, float)).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self._c(zt).sum(), zt)
        return g.numpy().copy()

    def step(self, rx: Any, mat: Any, fb: Any) -> Any:
        """One Adam step of the module on the batch's mean ``|g|^2``.

        %(step_io)s

        Raises
        ------
        RuntimeError
            From torch, for a module that does not accept the batch's shape.

        Examples
        --------
        %(torch_surrogate)s
        %(train_example)s
        (3,)
        """
        import torch

        T = {k: torch.as_tensor(np.array(v, float)) for k, v in mat.items()}
        z = T["z"].clone().requires_grad_(True)
        zt = T["zt"].clone().requires_grad_(True)
        ct = self._c(zt)
        (gz,) = torch.autograd.grad(self._c(z).sum(), z, create_graph=True)
        (gzt,) = torch.autograd.grad(ct.sum(), zt, create_graph=True)
        g = rx.terms(T, torch.as_tensor(fb), ct, gz, gzt, lambda a: a.sum(-1, keepdim=True))
        loss = (g * g).sum(1).mean()
        self._opt.zero_grad()
        loss.backward()
        self._opt.step()
        return float(loss.detach())

    def frozen(self) -> Any:
        """A deep copy (module included) for an estimate.

        Returns
        -------
        TorchSurrogate

        Examples
        --------
        %(torch_surrogate)s
        >>> s.frozen() is not s
        True
        """
        return copy.deepcopy(self)


# ---------------------------------------------------------------------------
# the estimator and the training
# ---------------------------------------------------------------------------

class RelaxJob(FeatureJob):
    """The relaxation's draws; f at b, the (frozen) surrogate at z~ and its
    input gradients at z and z~; features the RELAX terms."""

    L = 1

    def __init__(self, f: Any, dist: Any, surrogate: Any) -> None:
        self.f, self.dist, self.surrogate = f, dist, surrogate
        self.rx = _Relax(dist)
        self.P = self.rx.P
        self.width = self.rx.P

    def sample(self, gen: Any, m: Any) -> Any:
        mat = self.rx.sample(gen, m)
        if self.rx.cat:
            mat["pi"] = np.broadcast_to(self.rx.pi, (m,) + self.rx.pi.shape)
        return mat

    def features(self, mat: Any, rd: Any, chunk: Any, mag: Any) -> Any:
        rx, s = self.rx, self.surrogate
        m = len(mat["z"])
        zs = (m,) + rx.zshape
        fb = mag.see(E.call_values(self.f, rx.points(mat), rd, chunk))
        z, zt = mat["z"].reshape(zs), mat["zt"].reshape(zs)
        ct = E.call_values(s.value, zt, rd, chunk, name="the surrogate")
        gz = E.call_grad(s.grad, z, rd, chunk, name="the surrogate's grad")
        gzt = E.call_grad(s.grad, zt, rd, chunk, name="the surrogate's grad")
        g = rx.to_params(rx.terms(mat, fb, ct, gz, gzt, _npsum))
        return fb, g[:, :, None]


def _train_batch(rx: Any, f: Any, gen: Any, m: Any) -> Any:
    mat = rx.sample(gen, m)
    if rx.cat:
        mat["pi"] = np.broadcast_to(rx.pi, (m,) + rx.pi.shape)
    zs = (m,) + rx.zshape
    fb = E.call_values(f, rx.points(mat), None, m)
    mat = dict(mat, z=mat["z"].reshape(zs), zt=mat["zt"].reshape(zs))
    return mat, fb


def _child_seed(rng: Any, key: Any) -> Any:
    root = V.root_seed_sequence(rng)
    return np.random.SeedSequence(root.entropy, pool_size=root.pool_size,
                                  spawn_key=tuple(root.spawn_key) + (key,))


def train_surrogate(f: Any, dist: Any, surrogate: Any, *, steps: Any = 100, batch: Any = 256,
                    rng: Any = None) -> Any:
    """``steps`` gradient steps of the surrogate on the RELAX estimator's
    mean ``|g|^2`` (the variance plus a constant), each on a fresh batch of
    ``batch`` draws from ``rng``; returns the losses.

    Parameters
    ----------
    f : callable
        f of the discrete draws, as in :func:`relax_grad`.
    dist : Bernoulli or Categorical
        The distribution.
    surrogate : NumpySurrogate, RebarSurrogate or TorchSurrogate
        Trained in place.
    steps : int, default 100
        Gradient steps (>= 1).
    batch : int, default 256
        Draws per step (>= 2).
    rng : None, int, SeedSequence or Generator
        The randomness.

    Returns
    -------
    numpy.ndarray, shape (steps,)
        The loss of each step.

    Raises
    ------
    TypeError
        ``f`` not callable.
    ValueError
        Another family, ``steps`` or ``batch`` out of range.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> f = lambda b: ((b - 0.45) ** 2).sum(axis=-1)
    >>> s = mc.RebarSurrogate(f, lambda y: 2 * (y - 0.45))
    >>> losses = mc.relax.train_surrogate(f, mc.Bernoulli(probs=np.full(2, 0.3)), s, steps=5, rng=0)
    >>> losses.shape, bool(np.isfinite(losses).all())
    ((5,), True)
    """
    E.check_distribution(dist)
    rx = _Relax(dist)
    f = E.check_callable("f", f)
    steps = V.integer("steps", steps, minimum=1)
    batch = V.integer("batch", batch, minimum=2)
    gen = np.random.Generator(np.random.PCG64(V.root_seed_sequence(rng)))
    losses = []
    for _ in range(steps):
        mat, fb = _train_batch(rx, f, gen, batch)
        losses.append(surrogate.step(rx, mat, fb))
    return np.array(losses)


def _check_surrogate(s: Any) -> Any:
    for name in ("value", "grad", "step", "frozen"):
        if not callable(getattr(s, name, None)):
            raise TypeError("surrogate must be a NumpySurrogate, RebarSurrogate or "
                            f"TorchSurrogate (or have value, grad, step and frozen); got "
                            f"{type(s).__name__}")


def relax_grad(f: Any, dist: Any, n: Any, *, surrogate: Any, train_steps: Any = 1,
               train_batch: Any = 256, rng: Any = None,
               n_threads: Any = None, chunk_size: Any = None, n_streams: Any = E.DEFAULT_STREAMS,
               block_size: Any = None,
               client: Any = None) -> GradientEstimate:
    """RELAX estimate of grad_theta E[f(b)], b ~ Bernoulli / Categorical.

    Parameters
    ----------
    f : callable on discrete points: 0/1 of shape ``(m, *batch_shape)``
        (Bernoulli) or one-hot vectors ``(m, *batch_shape, K)`` (Categorical).
    dist : Bernoulli or Categorical (probs or logits)
    surrogate : NumpySurrogate, RebarSurrogate or TorchSurrogate
        Frozen for this call's estimate (a copy runs on the streams, also on
        Dask); then trained in place by ``train_steps`` steps on batches of
        ``train_batch`` draws from a child of ``rng``'s seed (0: no
        training), so successive calls train it online.
    rng, n_threads, chunk_size, n_streams, block_size, client : as in
        ``score_grad`` (bit-identical for any n_threads and on Dask).

    Returns
    -------
    GradientEstimate (method "relax"); ``info["train_loss"]`` the training
    losses of this call (mean ``|g|^2`` per step).  Per sample: 1 f evaluation,
    1 surrogate evaluation and 2 surrogate gradients.

    Raises
    ------
    TypeError
        ``surrogate`` missing or not one of the surrogate classes.
    ValueError
        A family other than Bernoulli / Categorical, or f or the surrogate
        returning the wrong shape or non-finite values.

    Examples
    --------
    A linear surrogate ``c(z) = phi z.sum()`` (any differentiable surrogate
    keeps the estimate unbiased; a good one lowers its variance):

    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.array([0.3, 0.6]))
    >>> f = lambda b: ((b - 0.45) ** 2).sum(axis=-1)     # d E[f] / d p = 0.1 per coordinate
    >>> sur = mc.NumpySurrogate(lambda z, phi: phi[0] * z.sum(axis=-1),
    ...                         lambda z, phi: np.broadcast_to(phi[0], z.shape),
    ...                         lambda z, phi: z.sum(axis=-1)[:, None], phi=np.zeros(1))
    >>> res = mc.relax_grad(f, q, 1000, surrogate=sur, rng=0)
    >>> bool(np.all(np.abs(res.grad["probs"] - 0.1) < 5 * res.stderr["probs"]))
    True
    """
    f = E.check_callable("f", f)
    _check_surrogate(surrogate)
    train_steps = V.integer("train_steps", train_steps, minimum=0)
    train_batch = V.integer("train_batch", train_batch, minimum=2)
    job = RelaxJob(f, dist, surrogate.frozen())
    n = V.integer("n", n, minimum=2, maximum=2**62)
    est, plan, mag = run_features(job, job.rx.dist, n, rng=rng, n_streams=n_streams,
                             block_size=block_size, n_threads=n_threads, chunk_size=chunk_size,
                             client=client, terms="the RELAX terms")
    grand, se, var, value, vse, vvar, nn, _ = est
    losses = (train_surrogate(f, dist, surrogate, steps=train_steps, batch=train_batch,
                              rng=_child_seed(plan.root, 2**41)) if train_steps else np.zeros(0))
    info = {**plan.info(), "f": "python", "f_evals_per_sample": 1, "train_loss": losses}
    return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn, "relax", info,
                               batch=est.batch)


def tune_rebar(f: Any, dist: Any, *, grad_f: Any, temperature: Any = 0.5, eta: Any = 1.0,
               steps: Any = 200, batch: Any = 256, lr: Any = 0.02,
               rng: Any = None) -> Any:
    """REBAR's temperature and scale (eta) tuned by gradient descent on the
    estimator's variance (as in the REBAR paper): the RELAX training of a
    RebarSurrogate.  Returns {"temperature", "eta", "loss"} (the loss per
    step: mean ``|g|^2`` over the batch).

    Parameters
    ----------
    f : callable
        f of the (relaxed) draws, as in :func:`~mcscore.rebar_grad`.
    dist : Bernoulli or Categorical
        The distribution.
    grad_f : callable
        The gradient of f at relaxed points.
    temperature, eta : float
        The starting point (temperature > 0).
    steps : int, default 200
        Gradient steps (>= 1).
    batch : int, default 256
        Draws per step (>= 2).
    lr : float, default 0.02
        Adam's step size (> 0).
    rng : None, int, SeedSequence or Generator
        The randomness.

    Returns
    -------
    dict
        ``{"temperature": float, "eta": float, "loss": numpy.ndarray (steps,)}``.

    Raises
    ------
    TypeError
        ``f`` or ``grad_f`` not callable.
    ValueError
        Another family, or an argument outside its range.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> f = lambda b: ((b - 0.45) ** 2).sum(axis=-1)
    >>> tuned = mc.tune_rebar(f, mc.Bernoulli(probs=np.full(2, 0.3)), grad_f=lambda y: 2 * (y - 0.45),
    ...                       steps=20, rng=0)
    >>> sorted(tuned), tuned["loss"].shape
    (['eta', 'loss', 'temperature'], (20,))
    """
    rx = _Relax(dist)
    s = RebarSurrogate(f, grad_f, temperature=temperature, eta=eta, categorical=rx.cat, lr=lr)
    losses = train_surrogate(f, dist, s, steps=steps, batch=batch, rng=rng)
    return {"temperature": s.temperature, "eta": s.eta, "loss": losses}

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "numpy_surrogate": """\
>>> import numpy as np
>>> import mcscore as mc
>>> s = mc.NumpySurrogate(lambda z, phi: phi[0] * z.sum(axis=-1),       # c(z) = phi0 sum z
...                       lambda z, phi: np.full(z.shape, phi[0]),
...                       lambda z, phi: z.sum(axis=-1)[:, None], phi=[0.5])""",
    "torch_surrogate": """\
%(torch_import)s
>>> s = mc.TorchSurrogate(input_size=3)""",
    "step_io": """\
Parameters
----------
rx : object
    The estimator's relaxation (internal: :func:`train_surrogate` passes it).
mat : dict of str to numpy.ndarray
    The batch's draws z, z~ and scores.
fb : numpy.ndarray, shape (m,)
    f at the batch's discrete draws.

Returns
-------
float
    The batch's mean ``|g|^2`` before the step.""",
    "train_example": """\
>>> q = mc.Bernoulli(probs=np.full(3, 0.3))
>>> losses = mc.relax.train_surrogate(lambda b: b.sum(axis=-1), q, s, steps=3, batch=64, rng=0)
>>> losses.shape""",
    "grad_io": """\
Parameters
----------
z : array_like
    Logit-space points.

Returns
-------
numpy.ndarray, the shape of z""",
    "raises_torch_size": """\
Raises
------
RuntimeError
    From torch, for points of another size.""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
