"""The score-function estimator: planning, dispatch to the kernels, and the
estimator algebra on per-stream sufficient statistics."""
from __future__ import annotations

import contextlib
import ctypes
import math
import numbers
import re

import numpy as np

from . import _kernels as K
from . import _validation as V
from ._config import effective_n_threads
from .distributions import Distribution
from .integrands import Integrand

__all__ = ["score_grad", "score_grad_from_samples", "GradientEstimate", "default_block_size"]

DEFAULT_STREAMS = 64
# draw values a stream runs per kernel call of a long fused run (see _run_fused)
EPOCH_VALUES = 1 << 22
MIN_BLOCK = 256
MAX_BLOCK_VALUES = 1 << 16  # draw values held in one block buffer (about 512 KiB)
BASELINES = (None, "loo", "optimal")


# ---------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------

def _fmt(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return np.array2string(a, precision=5, threshold=8, edgeitems=2, separator=", ")


class GradientEstimate:
    """The result of a gradient estimator.

    Attributes
    ----------
    grad : dict[str, ndarray]
        Estimate of d E[f] / d theta for each parameter the distribution was
        given, shaped like that parameter.
    stderr : dict[str, ndarray]
        Monte Carlo standard errors of ``grad``, same shapes.
    variance : dict[str, ndarray]
        Per-draw variance of the averaged terms (``stderr**2 * n``): the
        figure to compare estimators by.
    value, value_stderr : float
        Estimate of E[f] and its standard error.
    n : int
        Draws used.
    baseline : None, float, "loo" or "optimal"
    method : str
        Which estimator produced this ("score", ...).
    """

    def __init__(self, grad, stderr, variance, value, value_stderr, n, *, baseline=None,
                 method="score", value_variance=None, info=None):
        self.grad = grad
        self.stderr = stderr
        self.variance = variance
        self.value = float(value)
        self.value_stderr = float(value_stderr)
        self.value_variance = (float(value_variance) if value_variance is not None
                               else self.value_stderr**2 * n)
        self.n = int(n)
        self.baseline = baseline
        self.method = method
        self.info = dict(info or {})

    def z_scores(self, exact):
        """(estimate - exact) / stderr for each parameter in ``exact``."""
        return {k: (self.grad[k] - np.asarray(v)) / self.stderr[k] for k, v in exact.items()}

    def confidence_interval(self, level=0.95):
        """Normal-approximation intervals {name: (low, high)}; ``level`` in
        (0, 1)."""
        from scipy.stats import norm

        if (isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real)
                or not 0 < float(level) < 1):
            raise ValueError(f"level must be a number in (0, 1) (e.g. 0.95), got {level!r}")
        z = norm.ppf(0.5 + float(level) / 2)
        return {k: (g - z * self.stderr[k], g + z * self.stderr[k]) for k, g in self.grad.items()}

    def __repr__(self):
        b = self.baseline if not isinstance(self.baseline, float) else f"{self.baseline:g}"
        lines = [f"GradientEstimate(method={self.method!r}, n={self.n}, baseline={b!r})"]
        lines.append(f"  value: {_fmt(self.value)} +/- {_fmt(self.value_stderr)}")
        for k in self.grad:
            lines.append(f"  grad[{k!r}]: {_fmt(self.grad[k])}")
            lines.append(f"  {'stderr':>{len(k) + 6}}: {_fmt(self.stderr[k])}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------

def default_block_size(n, draw_size, n_streams=DEFAULT_STREAMS):
    """Block size B as a function of (n, draw size, streams) only.

    Large enough to amortise per-block work, small enough that the streams
    share the draws (parallelism, cross-fitting) and a block's buffer stays
    in cache.  It never depends on the thread count.
    """
    cap = max(64, MAX_BLOCK_VALUES // max(1, int(draw_size)))
    cap = 1 << (cap.bit_length() - 1)
    target = -(-int(n) // int(n_streams))
    b = 1 << max(MIN_BLOCK.bit_length() - 1, (target - 1).bit_length())
    return max(1, min(b, cap))


class _FixedSeed(np.random.bit_generator.ISeedSequence):
    """A seed source that costs nothing, for bit generators whose state is
    set right after construction."""

    _words = {}

    def generate_state(self, n_words, dtype=np.uint32):
        key = (n_words, np.dtype(dtype).str)
        w = self._words.get(key)
        if w is None:
            w = self._words[key] = np.ones(n_words, dtype=dtype)
        return w


_NO_SEED = _FixedSeed()
_PCG64_JUMP = 0x9E3779B97F4A7C15F39CC0605CEDC835  # PCG64.jumped's step, (phi - 1) * 2**128
_MASK128 = (1 << 128) - 1
# Below this many draw values a call runs on one thread: the work is smaller
# than the cost of waking a second one.  (Results never depend on threads.)
SERIAL_VALUES = 1 << 15


def stream_bit_generators(root, streams):
    """The bit generators of the given streams of a call seeded by `root`.

    Stream s is the call's root PCG64 (seeded from the root SeedSequence)
    jumped s times, i.e. ``PCG64(root).jumped(s)``: advanced by
    s * (phi - 1) * 2**128 steps, so the streams are far-apart,
    non-overlapping pieces of one PCG64 sequence, and stream s does not
    depend on how many streams a call uses (a Dask worker rebuilds its
    streams alone)."""
    state = np.random.PCG64(root).state
    out = []
    for s in streams:
        bg = np.random.PCG64(_NO_SEED)  # cheap: its state is overwritten
        bg.state = state
        if s:
            bg.advance((int(s) * _PCG64_JUMP) & _MASK128)
        out.append(bg)
    return out


class _Plan:
    def __init__(self, n, draw_size, rng, n_streams, block_size, n_threads):
        self.n = V.integer("n", n, minimum=2, maximum=2**62)
        self.n_streams = V.integer("n_streams", n_streams, minimum=1, maximum=2**20)
        if block_size is None:
            block_size = default_block_size(self.n, draw_size, self.n_streams)
        self.block_size = V.integer("block_size", block_size, minimum=1, maximum=2**24)
        self.n_blocks = -(-self.n // self.block_size)
        self.used = min(self.n_streams, self.n_blocks)
        self.root = V.root_seed_sequence(rng)
        work = min(self.used, max(1, (self.n * int(draw_size)) // SERIAL_VALUES))
        self.threads = effective_n_threads(n_threads, work_items=work)

    def bitgens(self, streams):
        """The bit generators of the given streams (see stream_bit_generators)."""
        return stream_bit_generators(self.root, streams)

    def block_rows(self, b):
        return min(self.block_size, self.n - b * self.block_size)

    def info(self):
        return {"n_streams": self.n_streams, "block_size": self.block_size,
                "streams_used": self.used, "threads": self.threads,
                "entropy": self.root.entropy, "spawn_key": tuple(self.root.spawn_key)}


# ---------------------------------------------------------------------------
# f: kinds and checks
# ---------------------------------------------------------------------------

_PTR_INTS = {"intptr_t", "Py_ssize_t", "ssize_t", "npy_intp", "long long", "int64_t",
             "longlong"}
_INT32 = {"int", "int32_t"}
if ctypes.sizeof(ctypes.c_long) == 8:
    _PTR_INTS.add("long")
else:
    _INT32.add("long")


def _norm_type(t):
    t = t.strip().replace("const ", "")
    return re.sub(r"\s*\*", " *", t).strip()


def _callback_signature(sig):
    m = re.fullmatch(r"\s*([\w ]+?)\s*\((.*)\)\s*", sig)
    if not m:
        return None
    ret = _norm_type(m.group(1))
    args = [_norm_type(a) for a in m.group(2).split(",")]
    if len(args) < 2 or args[0] != "double *":
        return None
    width = 8 if args[1] in _PTR_INTS else 4 if args[1] in _INT32 else None
    if width is None:
        return None
    rest = args[2:]
    if ret == "double" and rest == []:
        return K.CB_D_P_N if width == 8 else K.CB_D_P_I
    if ret == "double" and rest == ["void *"]:
        return K.CB_D_P_N_V if width == 8 else K.CB_D_P_I_V
    if ret == "int" and rest == ["double *", "void *"]:
        return K.CB_I_P_N_P_V if width == 8 else K.CB_I_P_I_P_V
    return None


CALLBACK_SIGNATURES = (
    "double (double *x, intptr_t d)",
    "double (double *x, intptr_t d, void *user_data)",
    "int (double *x, intptr_t d, double *out, void *user_data)   (non-zero return = error)",
    "the same with int d",
)


def _as_lowlevel(f):
    from scipy import LowLevelCallable

    if isinstance(f, LowLevelCallable):
        return f
    # numba @cfunc objects
    if hasattr(f, "ctypes") and hasattr(f, "address") and hasattr(f, "native_name"):
        return LowLevelCallable(f.ctypes)
    if isinstance(f, ctypes._CFuncPtr):
        return LowLevelCallable(f)
    return None


def _address(obj, what):
    """Integer address of a capsule, a ctypes pointer/function, or a cffi pointer."""
    if obj is None:
        return 0
    if type(obj).__name__ == "PyCapsule":
        api = ctypes.pythonapi
        api.PyCapsule_GetName.restype = ctypes.c_char_p
        api.PyCapsule_GetName.argtypes = [ctypes.py_object]
        api.PyCapsule_GetPointer.restype = ctypes.c_void_p
        api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        return api.PyCapsule_GetPointer(obj, api.PyCapsule_GetName(obj)) or 0
    if isinstance(obj, (ctypes._CFuncPtr, ctypes._Pointer, ctypes.c_void_p)):
        return ctypes.cast(obj, ctypes.c_void_p).value or 0
    if type(obj).__module__ == "_cffi_backend":
        import cffi

        return int(cffi.FFI().cast("uintptr_t", obj))
    raise TypeError(f"f: cannot take the address of the LowLevelCallable's {what} "
                    f"({type(obj).__name__})")


def _kernel_func(f, dist):
    """(kind, KernelFunc or None)."""
    if isinstance(f, Integrand):
        return "integrand", f._kernel_func(dist.draw_shape)
    llc = _as_lowlevel(f)
    if llc is not None:
        code = _callback_signature(llc.signature)
        if code is None:
            raise TypeError(
                f"f: LowLevelCallable signature {llc.signature!r} is not supported; use one of: "
                + "; ".join(CALLBACK_SIGNATURES)
            )
        return "callback", K.KernelFunc(
            K.FK_CALLBACK, keep=llc, fptr=_address(llc.function, "function"), sig=code,
            user_data=_address(llc.user_data, "user_data"))
    if callable(f):
        return "python", None
    raise TypeError(
        f"f must be a vectorised Python callable, an mcscore.integrands.Integrand or a "
        f"scipy.LowLevelCallable, got {type(f).__name__}"
    )


def _describe_draw(x):
    x = np.asarray(x)
    if x.ndim == 0:
        return repr(x.item())
    return np.array2string(x, precision=6, threshold=6, separator=", ")


def _nonfinite_draw_error(x, index):
    """The error for a non-finite value of f at a draw x that is itself not
    finite (the sampler's fault, not f's), or None when x is finite."""
    x = np.asarray(x)
    if x.dtype.kind != "f" or np.isfinite(x).all():
        return None
    return FloatingPointError(
        f"draw {index} is itself not finite (x = {_describe_draw(x)}), so f could not be "
        "finite there: the sampler produced it, not f (e.g. a Beta or Dirichlet draw at "
        "tiny concentrations whose gamma variates all underflowed to 0); use larger "
        "concentrations")


def _check_fx(out, m, first_index, x):
    """Validate f's output for a chunk of m draws starting at global index
    first_index; returns a float64 array of shape (m,)."""
    if out is None:
        raise TypeError("f returned None; it must return an array of shape (m,) for a batch "
                        "of m draws")
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError("f returned a numpy masked array; the mask would be dropped silently "
                        "and the masked values used: return a plain array of real numbers")
    if isinstance(out, (list, tuple)):
        out = np.asarray(out)
    if not isinstance(out, np.ndarray):
        if np.isscalar(out):
            raise ValueError(f"f returned a scalar for a batch of {m} draws; it must be vectorised "
                             f"and return shape ({m},)")
        try:
            out = np.asarray(out)
        except Exception:
            raise TypeError(f"f returned {type(out).__name__}, not an array") from None
    if out.dtype.kind == "c":
        raise TypeError(f"f returned complex values (dtype {out.dtype}); it must return reals")
    if out.dtype.kind == "O":
        bad = [v for v in out.flat
               if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)][:1]
        if bad:
            raise TypeError(f"f returned an object array holding {type(bad[0]).__name__} "
                            "values; it must return real numbers")
    if out.dtype.kind not in "biufO":  # datetime64, timedelta64, strings, ...
        raise TypeError(f"f returned dtype {out.dtype}; it must return real numbers")
    if out.dtype.kind == "O":
        try:
            out = out.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"f returned dtype {out.dtype}; it must return real numbers") from None
    if out.shape != (m,):
        raise ValueError(f"f returned shape {out.shape} instead of ({m},) for a batch of {m} "
                         f"draws (x of shape {x.shape})")
    out = np.asarray(out, dtype=np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        err = _nonfinite_draw_error(x[i], first_index + i)
        if err is not None:
            raise err
        raise ValueError(f"f returned {out[i]} at draw {first_index + i} "
                         f"(x = {_describe_draw(x[i])}); f must be finite")
    return out


def _call_f(f, x, first_index):
    try:
        out = f(x)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by f on draws {first_index}..{first_index + len(x) - 1} "
                         f"of the estimator)")
        raise
    return _check_fx(out, len(x), first_index, x)


# ---------------------------------------------------------------------------
# running the kernels
# ---------------------------------------------------------------------------

def _redraw(plan, dist, kd, index):
    """The draw with global index `index` (for error messages)."""
    b = index // plan.block_size
    s = b % plan.n_streams
    bg = plan.bitgens([s])[0]
    ds = kd.draw_size
    xt = np.empty((1, ds * plan.block_size))
    for bb in range(s, b + 1, plan.n_streams):
        K.draw_round(kd, [bg], np.array([bb], np.int64), np.array([0], np.int64), plan.n,
                     plan.block_size, 1, xt)
    m = plan.block_rows(b)
    i = index - b * plan.block_size
    x = xt[0, : ds * m].reshape(ds, m)[:, i]
    return dist._to_user_dtype(x.reshape(dist.draw_shape))


def _run_fused(kf, fkind, dist, kd, plan, progress=None):
    streams = np.arange(plan.used, dtype=np.int64)
    stats = np.zeros((plan.used, kd.stats_len))
    shifts = np.zeros(plan.used)
    # A progress bar only reads the draw counts the kernel writes (stats[:, 0]).
    bitgens = plan.bitgens(streams)
    # Long runs go in epochs of at most EPOCH_VALUES draw values per stream:
    # the calling thread checks for Ctrl-C between blocks, but once it has no
    # stream left the other threads would finish theirs unchecked.  Epochs
    # bound that wait; the result does not depend on them.
    per_block = plan.block_size * max(1, kd.draw_size)
    max_blocks = max(1, EPOCH_VALUES // per_block)
    next_block = streams.copy()
    nb = plan.n_blocks
    with progress.watch(stats) if progress is not None else contextlib.nullcontext():
        while True:
            code, idx = K.run_streams(kd, kf, bitgens, streams, plan.n, plan.n_streams,
                                      plan.block_size, plan.threads, stats, shifts,
                                      next_block, max_blocks)
            if code != 0 or not (next_block < nb).any():
                break
    _raise_kernel_error(code, idx, plan, dist, kd)
    return stats, shifts


def _raise_kernel_error(code, idx, plan, dist, kd):
    """Turn run_streams' error code into the exception it stands for."""
    if code == 3:
        raise KeyboardInterrupt
    if code == 4:
        raise MemoryError("could not allocate the kernels' block buffers")
    if code in (1, 2):
        x = _redraw(plan, dist, kd, idx)
        err = _nonfinite_draw_error(x, idx) if code == 1 else None
        if err is not None:
            raise err
        what = ("the callback signalled an error (non-zero return)" if code == 2
                else "f returned a non-finite value (nan or inf)")
        raise ValueError(f"{what} at draw {idx} (x = {_describe_draw(x)})")


def _run_python(f, dist, kd, plan, chunk_size, progress=None):
    """A Python f, round by round: a round is R blocks drawn by the kernels,
    handed to f in chunks, then accumulated.  With two or more threads,
    threads - 1 helper threads draw the next round while f runs on the
    current one, and the calling thread joins them once f is done (blocks
    are claimed one by one; each is drawn whole from its own stream), so the
    draws, and the result, are the same either way."""
    S, B = plan.n_streams, plan.block_size
    ds = kd.draw_size
    if chunk_size is None:
        chunk_size = max(B, (1 << 18) // max(1, ds))
    chunk_size = V.integer("chunk_size", chunk_size, minimum=1)
    R = min(S, plan.n_blocks, max(plan.threads, -(-chunk_size // B)))
    streams = np.arange(plan.used, dtype=np.int64)
    bitgens = plan.bitgens(streams)
    stats = np.zeros((plan.used, kd.stats_len))
    shifts = np.zeros(plan.used)
    n_rounds = -(-plan.n_blocks // R)

    def round_blocks(i):
        """The blocks of round i (made on demand: n may be huge)."""
        return np.arange(i * R, min(plan.n_blocks, (i + 1) * R), dtype=np.int64)

    overlap = plan.threads >= 2 and n_rounds >= 2
    nbuf = 2 if overlap else 1
    acc_threads = 1 if overlap else plan.threads
    xts = [np.empty((R, ds * B)) for _ in range(nbuf)]
    # LogNormal: log x as drawn, so that the score does not recompute it
    lts = [np.empty((R, ds * B)) if kd.has_log_column else None for _ in range(nbuf)]
    fx = np.empty((R, B))
    fx_flat = fx.reshape(-1)
    draw_shape = dist.draw_shape

    counters = [np.zeros(1, dtype=np.longlong) for _ in range(nbuf)]

    def draw(i):
        blocks = round_blocks(i)
        if overlap:  # helpers and the calling thread share the round's blocks
            K.draw_round_shared(kd, bitgens, blocks, blocks % S, plan.n, B, xts[i % nbuf],
                                lts[i % nbuf], counters[i % nbuf])
        else:
            K.draw_round(kd, bitgens, blocks, blocks % S, plan.n, B, plan.threads,
                         xts[i % nbuf], lts[i % nbuf])

    def start(i):
        """Start drawing round i in the helpers (None when there is none)."""
        if not overlap or i >= n_rounds:
            return None
        counters[i % nbuf][0] = 0
        return [pool.submit(draw, i) for _ in range(plan.threads - 1)]

    pool = None
    if overlap:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=plan.threads - 1,
                                  thread_name_prefix="mcscore-draw")
    try:
        if overlap:
            futs = start(0)
            draw(0)
            for fut in futs:
                fut.result()
        else:
            draw(0)
        for i in range(n_rounds):
            blocks = round_blocks(i)
            nxt = start(i + 1)
            xt, lt = xts[i % nbuf], lts[i % nbuf]
            slots = blocks % S
            rows = [plan.block_rows(int(b)) for b in blocks]
            total = sum(rows)
            x = np.empty((total, ds))
            for r, m in enumerate(rows):
                x[r * B: r * B + m] = xt[r, : ds * m].reshape(ds, m).T
            x = dist._to_user_dtype(x.reshape((total,) + draw_shape))
            first = int(blocks[0]) * B
            for c0 in range(0, total, chunk_size):
                xc = x[c0: c0 + chunk_size]
                fx_flat[c0: c0 + len(xc)] = _call_f(f, xc, first + c0)
            bad = K.accumulate_round(kd, blocks, slots, plan.n, B, S, acc_threads, xt, fx,
                                     stats, shifts, lt)
            if bad >= 0:  # cannot happen after _check_fx, kept as a guard
                raise ValueError(f"f returned a non-finite value at draw {bad}")
            if progress is not None:
                progress.update(len(blocks), total)
            if nxt is not None:
                draw(i + 1)  # f is done: help draw the next round
                for fut in nxt:
                    fut.result()
            elif pool is None and i + 1 < n_rounds:
                draw(i + 1)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return stats, shifts


# ---------------------------------------------------------------------------
# estimator algebra
# ---------------------------------------------------------------------------

def _category_moments(dist, C, Gk, Hk, n, G, H):
    """The five score sums of a per-category family from its per-category
    sums: C = count, Gk = sum g, Hk = sum g^2 of the draws in category k, and
    n, G, H the totals over all draws (broadcastable).  With
    s_k = a_k [x = k] + b_k: s_k^2 = (a_k^2 + 2 a_k b_k) [x = k] + b_k^2."""
    a, b = dist._table["a"], dist._table["b"]
    hit = C > 0
    with np.errstate(invalid="ignore"):
        A2 = np.where(hit, a * a + 2 * a * b, 0.0)
        Ss = np.where(hit, a * C, 0.0) + b * n
        Ss2 = A2 * C + b * b * n
        Sgs = np.where(hit, a * Gk, 0.0) + b * G
        Sgs2 = A2 * Gk + b * b * G
        Sg2s2 = A2 * Hk + b * b * H
    return Ss, Ss2, Sgs, Sgs2, Sg2s2


def _moments(dist, kd, stats, shifts):
    """Per-stream moments relative to one common shift c0.

    Returns (c0, count[S], G[S], H[S], (Ss, Ss2, Sgs, Sgs2, Sg2s2) each [S, P])
    with g = f - c0.
    """
    count = stats[:, 0]
    nonempty = count > 0
    c0 = float(shifts[np.argmax(nonempty)])
    d = np.where(nonempty, shifts - c0, 0.0)
    G0 = stats[:, 1]
    G = G0 + count * d
    H = stats[:, 2] + 2 * d * G0 + count * d * d
    d2 = d[:, None]
    if kd.per_category:
        P = kd.n_units * kd.n_cat
        cat = stats[:, 3:].reshape(len(count), P, 3)
        C, Gk0, Hk0 = cat[..., 0], cat[..., 1], cat[..., 2]
        Gk = Gk0 + d2 * C
        Hk = Hk0 + 2 * d2 * Gk0 + d2 * d2 * C
        mom = _category_moments(dist, C, Gk, Hk, count[:, None], G[:, None], H[:, None])
        return c0, count, G, H, mom
    M = stats[:, 3:].reshape(len(count), kd.n_coords, 5)
    Ss, Ss2, Sgs0, Sgs20, Sg2s20 = (M[..., i] for i in range(5))
    Sgs = Sgs0 + d2 * Ss
    Sgs2 = Sgs20 + d2 * Ss2
    Sg2s2 = Sg2s20 + 2 * d2 * Sgs20 + d2 * d2 * Ss2
    return c0, count, G, H, (Ss, Ss2, Sgs, Sgs2, Sg2s2)


def _check_baseline(baseline):
    if baseline is None or (isinstance(baseline, str) and baseline in ("loo", "optimal")):
        return baseline
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, (bool, np.bool_)):
        b = float(baseline)
        if not np.isfinite(b):
            raise ValueError(f"baseline must be finite, got {b}")
        return b
    raise ValueError(
        f"baseline must be None, a finite number, 'loo' or 'optimal', got {baseline!r}"
    )


# A category expected fewer than this many times in n draws (n * p_k < 30) is
# "rare": its sample variance rests on a handful of draws, or none (a category
# never drawn has a sample variance near 0 whatever f is there), so its
# standard error is floored (see _rare_floor).
RARE_EXPECTED_COUNT = 30.0


def _rare_floor(dist, kd, stats, shifts, n):
    """For a per-category family (Categorical) with some category expected
    fewer than RARE_EXPECTED_COUNT times in the n draws: a function of the
    centre e (f - baseline = g + e, g = f - c0 as in _moments) giving a floor
    of the per-draw variance of every score coordinate (0 for the others);
    else None.

    With s_k = a_k [x = k] + b_k and h = f - baseline, the exact per-draw
    variance of h s_k is
        p_k (a_k^2 + 2 a_k b_k) E[h^2 | k] + b_k^2 E[h^2] - (p_k a_k E[h | k] + b_k E[h])^2.
    The sample variance puts the observed frequency of category k in place of
    p_k: for a category drawn a few times, or never, it is near 0 whatever f
    is there.  The floor uses the known p_k with the observed moments of f on
    category k and overall; for a category never drawn, E[h^2 | k] is
    bounded by the farthest value f took on the drawn categories (per
    category its mean +/- its standard deviation, so a random f counts too)
    and E[h | k] taken as 0."""
    if not kd.per_category:
        return None
    p = np.ravel(dist.probs)
    rare = n * p < RARE_EXPECTED_COUNT
    if not rare.any():
        return None
    a, b = dist._table["a"], dist._table["b"]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        count = stats[:, 0]
        d = np.where(count > 0, shifts - shifts[np.argmax(count > 0)], 0.0)
        cat = stats[:, 3:].reshape(len(count), kd.n_units, kd.n_cat, 3)
        C = cat[..., 0].sum(0)
        mg = (cat[..., 1].sum(0) + np.tensordot(d, cat[..., 0], 1)) / C
        sq = (cat[..., 2].sum(0) + 2 * np.tensordot(d, cat[..., 1], 1)
              + np.tensordot(d * d, cat[..., 0], 1)) / C
        sd = np.sqrt(np.maximum(sq - mg * mg, 0.0))
        seen = C > 0
        hi = np.where(seen, mg + sd, -np.inf).max(-1, keepdims=True)
        lo = np.where(seen, mg - sd, np.inf).min(-1, keepdims=True)
    shape = (kd.n_units, kd.n_cat)
    lo, hi = (np.broadcast_to(v, shape).ravel() for v in (lo, hi))
    seen, mg, sq = seen.ravel(), mg.ravel(), sq.ravel()
    A2 = np.maximum(a * a + 2 * a * b, 0.0)

    def floor(e, M1g, M2g):
        """e: centre per coordinate (or scalar); M1g, M2g: mean of g and of
        g^2 over all draws."""
        with np.errstate(over="ignore", invalid="ignore"):
            m1 = np.where(seen, mg + e, 0.0)
            m2 = np.where(seen, sq + 2 * e * mg + e * e,
                          np.maximum(np.square(lo + e), np.square(hi + e)))
            M1 = M1g + e
            M2 = M2g + 2 * e * M1g + e * e
            v = p * A2 * m2 + b * b * M2 - np.square(p * a * m1 + b * M1)
        return np.where(rare, v, 0.0)

    floor.n_rare = int(np.count_nonzero(rare))
    return floor


def _algebra(c0, count, G, H, mom, baseline, rare=None):
    """Estimate, standard error and per-draw variance for each coordinate;
    `rare` (from _rare_floor) floors the variance of rare categories."""
    n = float(count.sum())
    Ss, Ss2, Sgs, Sgs2, Sg2s2 = mom
    factor = 1.0
    if baseline is None:
        e = c0
    elif baseline == "loo":
        e = -G.sum() / n
        factor = n / (n - 1)
    elif baseline == "optimal":
        if np.count_nonzero(count) < 2:
            raise ValueError(
                "baseline='optimal' is cross-fitted across streams and needs draws in at "
                f"least 2 streams; n={int(n)} fills only one block: use a larger n, a smaller "
                "block_size, or score_grad_from_samples"
            )
        tot2 = Sgs2.sum(0)
        totss = Ss2.sum(0)
        num = tot2 - Sgs2
        den = totss - Ss2
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.where(den > 0, -num / den, -G.sum() / n)
    else:
        e = c0 - baseline
    sy = (Sgs + e * Ss).sum(0)
    sy2 = (Sg2s2 + 2 * e * Sgs2 + e * e * Ss2).sum(0)
    mean = sy / n
    var = np.maximum(sy2 - n * mean * mean, 0.0) / (n - 1)
    if rare is not None:
        # f - baseline = g + e, g = f - c0; e is per stream when cross-fitted
        e_all = (e * count[:, None]).sum(0) / n if np.ndim(e) == 2 else e
        var = np.maximum(var, rare(e_all, G.sum() / n, H.sum() / n))
    grad = factor * mean
    se = factor * np.sqrt(var / n)
    value = c0 + G.sum() / n
    vvar = max(H.sum() - G.sum() ** 2 / n, 0.0) / (n - 1)
    return grad, se, var * factor**2, value, math.sqrt(vvar / n), vvar


# Mean squares below this are at the edge of the normal double range: the
# sums of squares behind the standard errors have underflowed.  Estimates
# below _RESOLUTION are zero at double resolution (e.g. gradients of order
# e**-700 for logits at +-700) and are returned as they are.
_TINY_MEAN_SQUARE = 1e-300
_RESOLUTION = 1e-290


def _check_range(dist, grad, var, value, vvar, f_underflow, terms="f * score"):
    """Raise FloatingPointError instead of returning an estimate or standard
    error that overflowed (inf/NaN) or underflowed (a zero standard error for
    an estimate that is not itself zero at double resolution).  Every
    estimator goes through it; `terms` names its per-draw terms."""
    if not (np.isfinite(grad).all() and np.isfinite(var).all() and np.isfinite(value)
            and np.isfinite(vvar)):
        raise FloatingPointError(
            f"the estimator's sums overflowed for {dist!r}: f or {terms} is too large for "
            f"double precision (E[f] ~ {value:.3g}); rescale f (e.g. divide it by a constant, "
            "or subtract a baseline)"
        )
    with np.errstate(over="ignore", under="ignore"):
        under = (var + np.square(grad) < _TINY_MEAN_SQUARE) & (np.abs(grad) > _RESOLUTION)
    if under.any() or f_underflow:
        raise FloatingPointError(
            f"the estimator's sums of squares underflowed for {dist!r}: |{terms}| is below "
            "about 1e-150, so the standard errors would be 0; rescale f (multiply it by a "
            "constant and divide the estimate by it)"
        )


def _moments_total(dist, kd, stats, shifts):
    """_moments summed over the streams (a leading axis of length 1), for the
    baselines that need totals only (None, a number, "loo"): a few array
    operations instead of one per stream statistic."""
    if not kd.per_category:
        c0, n, Gt, Ht, M = K.stream_totals(stats, shifts, kd.n_coords)
        return c0, np.array([n]), np.array([Gt]), np.array([Ht]), tuple(M[:, None, :])
    count = stats[:, 0]
    nonempty = count > 0
    c0 = float(shifts[np.argmax(nonempty)])
    d = np.where(nonempty, shifts - c0, 0.0)
    d2 = d * d
    G0 = stats[:, 1]
    Gt = G0.sum() + d @ count
    Ht = stats[:, 2].sum() + 2.0 * (d @ G0) + d2 @ count
    # per-category sums (count, sum g, sum g^2 of the draws in category k)
    M = stats[:, 3:]
    C0 = M[:, 0::3]
    Gk0 = M[:, 1::3]
    C = C0.sum(0)
    Gk = Gk0.sum(0) + d @ C0
    Hk = M[:, 2::3].sum(0) + 2.0 * (d @ Gk0) + d2 @ C0
    n = count.sum()
    mom = _category_moments(dist, C, Gk, Hk, n, Gt, Ht)
    P = kd.n_units * kd.n_cat
    return (c0, np.array([n]), np.array([Gt]), np.array([Ht]),
            tuple(np.reshape(x, (1, P)) for x in mom))


def _finish(dist, kd, stats, shifts, baseline, plan=None, method="score", extra_info=None):
    with np.errstate(over="ignore", invalid="ignore"):
        if baseline != "optimal":
            c0, count, G, H, mom = _moments_total(dist, kd, stats, shifts)
        else:
            c0, count, G, H, mom = _moments(dist, kd, stats, shifts)
    if not (np.isfinite(mom[0]).all() and np.isfinite(mom[1]).all()):
        raise FloatingPointError(
            f"the score of {dist!r} overflowed on some draws (a draw at the edge of the "
            "support, e.g. a Gamma or Beta draw that rounded to 0 or 1 for a tiny "
            "concentration, or a NaN draw); the estimate would be NaN"
        )
    if not all(np.isfinite(m).all() for m in mom) or not (np.isfinite(G).all()
                                                          and np.isfinite(H).all()):
        raise FloatingPointError(
            f"the estimator's sums overflowed for {dist!r}: f - f(first draw) or f * score is "
            "too large for double precision; rescale f (e.g. divide it by a constant)"
        )
    rare = _rare_floor(dist, kd, stats, shifts, float(count.sum()))
    with np.errstate(over="ignore", invalid="ignore"):
        grad, se, var, value, vse, vvar = _algebra(c0, count, G, H, mom, baseline, rare)
    n_all = max(1.0, float(count.sum()))
    _check_range(dist, grad, var, value, vvar,
                 float(H.sum()) / n_all < _TINY_MEAN_SQUARE
                 and abs(float(G.sum())) / n_all > _RESOLUTION)
    info = plan.info() if plan is not None else {}
    if rare is not None:
        info["rare_categories"] = rare.n_rare
    info.update(extra_info or {})
    return GradientEstimate(
        dist._split_coords(grad), dist._split_coords(se), dist._split_coords(var),
        value, vse, int(count.sum()), baseline=baseline, method=method, value_variance=vvar,
        info=info,
    )


# ---------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------

def score_grad(f, dist, n, *, rng=None, baseline=None, n_threads=None, chunk_size=None,
               n_streams=DEFAULT_STREAMS, block_size=None, control_variates=None,
               antithetic=False, grad_f=None, client=None, progress=False):
    """Score-function estimate of grad_theta E_{x ~ dist}[f(x)].

    Parameters
    ----------
    f : callable, Integrand or scipy.LowLevelCallable
        * a vectorised Python callable: ``f(x)`` with ``x`` of shape
          ``(m, *dist.draw_shape)`` returns shape ``(m,)`` (called chunk by
          chunk, never once per draw; it receives a fresh copy of the draws);
        * a built-in integrand from :mod:`mcscore.integrands`, fused into the
          kernel (no array of draws is ever built: O(1) memory in n);
        * a ``scipy.LowLevelCallable`` (numba ``cfunc``, ctypes, Cython) with
          one of the signatures in ``CALLBACK_SIGNATURES``, called from the
          kernel's threads without the GIL on a pointer to one draw.
    dist : Distribution
    n : int >= 2
        Number of draws.
    rng : None, int, SeedSequence or Generator (SPEC 7)
        Seeds the call's streams.  The same int / SeedSequence gives a
        bit-identical result for any ``n_threads`` and ``chunk_size``.
    baseline : None, float, "loo" or "optimal"
        None: plain estimator.  A float b: ``(f - b) * score``.  "loo":
        leave-one-out (RLOO) baseline, unbiased.  "optimal": per coordinate
        the variance-minimising constant ``E[f s^2] / E[s^2]``, cross-fitted
        across streams (each stream's baseline comes from the other
        streams) so the estimate stays unbiased.
    n_threads : None or int
        None = all threads OpenMP would use (OMP_NUM_THREADS and threadpoolctl
        are honoured), -1 = all, -2 = all but one, 0 is an error.
    chunk_size : int, optional
        Draws per call of a Python f (default about 2**18 values).
    n_streams, block_size : int, optional
        The draws are cut into blocks of ``block_size`` draws; block b belongs
        to stream ``b % n_streams``.  The result is a function of (f, dist, n,
        rng, n_streams, block_size) only.  The default block size is a pure
        function of n and the draw size (:func:`default_block_size`).
    control_variates : list, optional
        Control variates, each ``"delta"`` (the delta-method / first-order
        Taylor control variate ``grad_f(mu) . (x - mu)``, mu = E[x]; needs
        ``grad_f``) or a pair ``(h, grad_mean)``: h a vectorised callable
        and grad_mean the gradient of E[h] w.r.t. the parameters (a dict
        ``{name: array}`` or a callable ``dist -> dict``).  The estimator
        averages ``f s - sum_j beta_j (h_j s - grad E[h_j])`` with per
        coordinate variance-minimising coefficients beta, cross-fitted
        across streams (unbiased); with ``baseline="optimal"`` the
        baseline is fitted jointly with them.
    antithetic : bool
        Draw antithetic pairs (x, x') for symmetric families (Normal: x' =
        2 loc - x; LogNormal: the same for log x) and average each pair's
        terms; n counts draws (n // 2 pairs).  ``variance`` is then
        stderr**2 * n (per draw, comparable with the plain estimator).
    grad_f : callable, optional
        Vectorised gradient of f (shape of x), for ``"delta"``.
    client : dask.distributed.Client, optional
        Run the streams on the Dask cluster behind ``client`` (see
        :mod:`mcscore.distributed`): the result is bit-identical to the local
        run with the same (f, dist, n, rng, n_streams, block_size).  f must
        be an Integrand or a picklable Python callable.  On a worker,
        ``n_threads`` is resolved there (Dask workers set OMP_NUM_THREADS=1).
    progress : bool
        Show a tqdm progress bar (blocks done, draws per second).  It does
        not change the result.

    Returns
    -------
    GradientEstimate
    """
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be an mcscore distribution, got {type(dist).__name__}")
    baseline = _check_baseline(baseline)
    if grad_f is not None and not callable(grad_f):
        raise TypeError(f"grad_f must be a vectorised Python callable, got {type(grad_f).__name__}")
    if control_variates is not None or antithetic is not False:
        if client is not None:
            raise ValueError("client= (Dask) does not yet support control_variates= or "
                             "antithetic=; run them locally")
        from .estimators import _score_vr

        return _score_vr(f, dist, n, rng=rng, baseline=baseline,
                         control_variates=control_variates, antithetic=antithetic,
                         grad_f=grad_f, n_threads=n_threads, chunk_size=chunk_size,
                         n_streams=n_streams, block_size=block_size)
    fkind, kf = _kernel_func(f, dist)
    dist._check_differentiable()
    kd = dist._kernel_dist()
    plan = _Plan(n, kd.draw_size, rng, n_streams, block_size, n_threads)
    bar = _progress_bar(progress, plan)
    try:
        if client is not None:
            from .distributed import run_on_dask

            stats, shifts = run_on_dask(client, f, fkind, dist, kd, plan, n_threads=n_threads,
                                        chunk_size=chunk_size, progress=bar)
        elif fkind == "python":
            stats, shifts = _run_python(f, dist, kd, plan, chunk_size, progress=bar)
        else:
            stats, shifts = _run_fused(kf, fkind, dist, kd, plan, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return _finish(dist, kd, stats, shifts, baseline, plan, extra_info={"f": fkind})


def _progress_bar(progress, plan):
    if progress is False or progress is None:
        return None
    if progress is not True:
        raise TypeError(f"progress must be True or False, got {progress!r}")
    from ._progress import ProgressBar

    return ProgressBar(plan)


def _baselined_terms(fx, S, baseline):
    """Per-sample terms (f_i - b_i) * S_i of the score-function estimator on
    m independent samples: fx (m,), S (m, P) scores; baseline None, a number,
    "loo" (b_i = mean of the other f) or "optimal" (per coordinate the exact
    leave-one-out E[f s^2] / E[s^2]).  Their mean is the unbiased estimate."""
    m = len(fx)
    f = fx[:, None]
    if baseline is None:
        return f * S
    loo = (fx.sum() - f) / (m - 1)
    if baseline == "loo":
        return (f - loo) * S
    if baseline == "optimal":
        s2 = S * S
        num = (f * s2).sum(0) - f * s2
        den = s2.sum(0) - s2
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(den > 0, num / den, loo)
        return (f - b) * S
    return (f - baseline) * S


def _samples_rare_floor(dist, x, fx, S, baseline):
    """_rare_floor for score_grad_from_samples: the per-category sums of m
    Categorical draws x with values fx laid out as one stream of kernel
    statistics; the floor of each coordinate's per-draw variance of the
    baselined terms, or None when no category is rare."""
    kd = dist._kernel_dist()
    if not kd.per_category:
        return None
    m = len(fx)
    g = fx - fx[0]
    ind = x.reshape(m, kd.n_units)[:, :, None] == np.arange(kd.n_cat)
    cat = np.stack([ind.sum(0), np.tensordot(g, ind, 1), np.tensordot(g * g, ind, 1)], -1)
    stats = np.concatenate([[m, g.sum(), g @ g], cat.ravel()])[None]
    floor = _rare_floor(dist, kd, stats, fx[:1], float(m))
    if floor is None:
        return None
    factor = 1.0
    if baseline is None:
        b = 0.0
    elif baseline == "loo":  # f_i - mean of the others = (f_i - mean) m / (m - 1)
        b, factor = fx.mean(), m / (m - 1)
    elif baseline == "optimal":  # about E[f s^2] / E[s^2] per coordinate
        s2 = S * S
        b = np.where(s2.sum(0) > 0, (fx @ s2) / s2.sum(0), fx.mean())
    else:
        b = baseline
    return floor(fx[0] - b, g.mean(), (g @ g) / m) * factor**2


def score_grad_from_samples(dist, x, fx, *, baseline=None):
    """The estimator algebra on draws the caller made.

    Parameters
    ----------
    dist : Distribution
        The distribution x was drawn from.
    x : array, shape (m, *dist.draw_shape)
    fx : array, shape (m,)
        f at each draw (returns, rewards, simulator outputs).
    baseline : None, float, "loo" or "optimal"
        As in :func:`score_grad`; "optimal" uses an exact leave-one-out
        per-coordinate baseline, so it stays unbiased.
    """
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be an mcscore distribution, got {type(dist).__name__}")
    baseline = _check_baseline(baseline)
    x = dist._check_x(x)
    m = x.shape[0]
    if m < 2:
        raise ValueError(f"x must hold at least 2 draws, got {m}")
    V.reject_masked("fx", fx)
    fx_arr = np.asarray(fx) if fx is not None else None
    if fx_arr is None or fx_arr.dtype.kind not in "biuf":
        raise TypeError(f"fx must be an array of real numbers, got "
                        f"{'None' if fx_arr is None else fx_arr.dtype}")
    if fx_arr.shape != (m,):
        raise ValueError(f"fx must have shape ({m},) to match x, got {fx_arr.shape}")
    fx_arr = fx_arr.astype(np.float64)
    if not np.isfinite(fx_arr).all():
        i = int(np.argmax(~np.isfinite(fx_arr)))
        raise ValueError(f"fx[{i}] = {fx_arr[i]} is not finite")
    lp = dist.log_prob(x)
    if not np.isfinite(lp).all():
        i = int(np.argmax(~np.isfinite(lp.reshape(m, -1)).all(axis=1)))
        raise ValueError(f"x[{i}] is outside the support of {dist!r}")
    sc = dist._score(x)  # the support was checked just above
    names = list(sc)
    S = np.concatenate([sc[k].reshape(m, -1) for k in names], axis=1)
    y = _baselined_terms(fx_arr, S, baseline)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        grad = y.mean(0)
        var = y.var(0, ddof=1)
        floor = _samples_rare_floor(dist, x, fx_arr, S, baseline)
        if floor is not None:
            var = np.maximum(var, floor)
        se = np.sqrt(var / m)
        vvar = float(fx_arr.var(ddof=1))
        g = fx_arr - fx_arr[0]
        f_underflow = (float(np.mean(np.square(g))) < _TINY_MEAN_SQUARE
                       and abs(float(g.mean())) > _RESOLUTION)
    _check_range(dist, grad, var, float(fx_arr.mean()), vvar, f_underflow)
    out = {}
    for part in (grad, se, var):
        d, o = {}, 0
        for k in names:
            size = sc[k][0].size
            d[k] = part[o: o + size].reshape(sc[k].shape[1:])
            o += size
        out[len(out)] = d
    return GradientEstimate(out[0], out[1], out[2], fx_arr.mean(), math.sqrt(vvar / m), m,
                            baseline=baseline, method="score", value_variance=vvar,
                            info={"f": "samples"})
