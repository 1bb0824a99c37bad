"""Type stubs for the compiled module mcscore._kernels (see _kernels.pyx).

The C-level API for other extensions is in _kernels.pxd; these stubs cover
what Python sees.
"""
from typing import Any, Final, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from typing_extensions import disjoint_base

HAVE_OPENMP: Final[bool]
NORMAL_FILL_INLINE: Final[bool]
INLINE_DRAWS: Final[bool]
INLINE_SAMPLERS: Final[tuple[bool, bool]]
VM_PAIRED_SCORES: Final[bool]

# families (mcscore.distributions.FAMILIES order)
MC_NORMAL: Final[int]
MC_LOGNORMAL: Final[int]
MC_EXPONENTIAL: Final[int]
MC_GAMMA: Final[int]
MC_BETA: Final[int]
MC_POISSON: Final[int]
MC_BERNOULLI: Final[int]
MC_BINOMIAL: Final[int]
MC_GEOMETRIC: Final[int]
MC_NEGATIVE_BINOMIAL: Final[int]
MC_CATEGORICAL: Final[int]
MC_MULTINOMIAL: Final[int]
MC_DIRICHLET: Final[int]
MC_LAPLACE: Final[int]
MC_HALF_NORMAL: Final[int]
MC_CHI2: Final[int]
MC_INVERSE_GAMMA: Final[int]
MC_GUMBEL: Final[int]
MC_WEIBULL: Final[int]
MC_MULTIVARIATE_NORMAL: Final[int]
MC_LOWRANK_MULTIVARIATE_NORMAL: Final[int]
MC_UNIFORM: Final[int]
MC_STUDENT_T: Final[int]
MC_CAUCHY: Final[int]
MC_HALF_CAUCHY: Final[int]
MC_VON_MISES: Final[int]
MC_ONE_HOT_CATEGORICAL: Final[int]
MC_N_FAMILIES: Final[int]
# score term kinds (the one evaluator; any other kind is rejected)
SK_AFFINE: Final[int]
SK_LOG_AFFINE: Final[int]
SK_LOG1M_AFFINE: Final[int]
SK_QUAD: Final[int]
SK_LOG_QUAD: Final[int]
SK_CATEGORY: Final[int]
SK_SIGN: Final[int]
SK_ABS: Final[int]
SK_FAMILY: Final[int]
SK_RECIP: Final[int]
SK_EXPM1: Final[int]
SK_XEXPM1: Final[int]
SK_LOG_EXPM1: Final[int]
SK_LOG_XEXPM1: Final[int]
SK_RATIO_SQ: Final[int]
SK_INV_1P_SQ: Final[int]
SK_LOG1P_SQ: Final[int]
SK_SIN: Final[int]
SK_COS: Final[int]
SK_N_KINDS: Final[int]
# fused integrand terms
IK_POLY: Final[int]
IK_LINEAR: Final[int]
IK_QUAD_DIAG: Final[int]
IK_QUAD_FULL: Final[int]
IK_SIN: Final[int]
IK_COS: Final[int]
IK_EXP: Final[int]
IK_LOG1P: Final[int]
IK_INDICATOR: Final[int]
IK_CALL: Final[int]
IK_PUT: Final[int]
IK_DIGITAL_CALL: Final[int]
IK_DIGITAL_PUT: Final[int]
# kinds of f
FK_VALUES: Final[int]
FK_INTEGRAND: Final[int]
FK_CALLBACK: Final[int]
# C callback signatures
CB_D_P_N: Final[int]
CB_D_P_N_V: Final[int]
CB_I_P_N_P_V: Final[int]
CB_D_P_I: Final[int]
CB_D_P_I_V: Final[int]
CB_I_P_I_P_V: Final[int]

def omp_max_threads() -> int: ...
def omp_num_procs() -> int: ...

@disjoint_base
class KernelDist:
    """A distribution prepared for the kernels (arrays owned here)."""

    @property
    def draw_size(self) -> int: ...
    @property
    def n_coords(self) -> int: ...
    @property
    def n_units(self) -> int: ...
    @property
    def n_cat(self) -> int: ...
    @property
    def stats_len(self) -> int: ...
    @property
    def per_category(self) -> bool: ...
    def __init__(
        self,
        family: int,
        per_category: bool,
        n_units: int,
        n_cat: int,
        draw_size: int,
        p0: ArrayLike,
        p1: ArrayLike,
        alias_q: ArrayLike,
        alias_i: ArrayLike,
        t_start: ArrayLike,
        t_kind: ArrayLike,
        t_col: ArrayLike,
        t_a: ArrayLike,
        t_b: ArrayLike,
        t_c: ArrayLike,
    ) -> None: ...
    def renewed(
        self, p0: ArrayLike, p1: ArrayLike, t_a: ArrayLike, t_b: ArrayLike, t_c: ArrayLike
    ) -> KernelDist: ...

@disjoint_base
class KernelFunc:
    """f as the kernels see it: values, a fused integrand, or a C callback."""

    @property
    def kind(self) -> int: ...
    def __init__(
        self,
        kind: int,
        integrand: tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike, ArrayLike, float]
        | None = ...,
        keep: object = ...,
        fptr: int = ...,
        sig: int = ...,
        user_data: int = ...,
    ) -> None: ...

def draw(dist: KernelDist, bit_generator: np.random.BitGenerator, m: int) -> NDArray[np.float64]: ...
def eval_scores(dist: KernelDist, x: ArrayLike) -> NDArray[np.float64]: ...
def check_term_kinds(kinds: ArrayLike, owner: str, family: int | None = ...) -> None: ...
def eval_integrand(func: KernelFunc, dist: KernelDist, x: ArrayLike) -> NDArray[np.float64]: ...
# the arrays of a round of blocks (see _kernels.pyx, "rounds of blocks"):
# one line per role, so that the shared arguments read at a glance
_F64 = NDArray[np.float64]
_I64 = NDArray[np.int64]
_BitGens = list[np.random.BitGenerator]

def run_streams(
    dist: KernelDist, func: KernelFunc, bitgens: _BitGens, streams: _I64,
    n: int, n_streams: int, block_size: int, n_threads: int,
    stats: _F64, shifts: _F64, next_block: _I64 | None = ..., max_blocks: int = ...,
) -> tuple[int, int]: ...
def draw_round(
    dist: KernelDist, bitgens: _BitGens, blocks: _I64, slots: _I64,
    n: int, block_size: int, n_threads: int,
    xt: _F64, lt: _F64 | None = ...,
) -> None: ...
def locscale_renewed(
    tpl: KernelDist, loc: Any, scale: Any, shape: tuple[int, ...], log_ref: bool, lo_s: float,
    hi_s: float, resolution: float, copy: bool = ...,
) -> tuple[KernelDist, Any, Any, NDArray[np.float64], NDArray[np.float64],
           NDArray[np.float64]] | None: ...
def one_round(
    dist: KernelDist, bitgens: list[Any], blocks: NDArray[np.int64], slots: NDArray[np.int64],
    n: int, block_size: int, n_streams: int, n_threads: int, xt: NDArray[np.float64],
    lt: NDArray[np.float64] | None, rows: NDArray[np.float64], row_off: NDArray[np.int64],
    fx: NDArray[np.float64], stats: NDArray[np.float64], shifts: NDArray[np.float64],
    evaluate: Any,
) -> int: ...
def draw_round_rows(
    dist: KernelDist, bitgens: _BitGens, blocks: _I64, slots: _I64,
    n: int, block_size: int, n_threads: int,
    xt: _F64, lt: _F64 | None, rows: _F64, row_off: _I64,
    counter: NDArray[np.longlong] | None = ..., rows_only: bool = ...,
) -> None: ...
def rows_direct(dist: KernelDist) -> bool: ...
def accumulate_round_rows(
    dist: KernelDist, blocks: _I64, slots: _I64,
    n: int, block_size: int, n_streams: int, n_threads: int,
    rows: _F64, row_off: _I64, fx: _F64, stats: _F64, shifts: _F64,
) -> int: ...
def std_normal_fill(bit_generator: np.random.BitGenerator, m: int) -> _F64: ...
def inline_sample(bit_generator: np.random.BitGenerator, kind: str, m: int,
                  shape: float = ...) -> _F64: ...
def inline_poisson(bit_generator: np.random.BitGenerator, lam: float, m: int,
                   per_call: bool = ...) -> _I64: ...
def inline_vonmises(bit_generator: np.random.BitGenerator, mu: float, kappa: float,
                    m: int) -> tuple[_F64, _F64]: ...
def loggam_pair(xs: ArrayLike) -> tuple[_F64, _F64]: ...
def draw_round_shared(
    dist: KernelDist, bitgens: _BitGens, blocks: _I64, slots: _I64,
    n: int, block_size: int,
    xt: _F64, lt: _F64 | None, counter: NDArray[np.longlong],
) -> None: ...
def accumulate_round(
    dist: KernelDist, blocks: _I64, slots: _I64,
    n: int, block_size: int, n_streams: int, n_threads: int,
    xt: _F64, fx: _F64, stats: _F64, shifts: _F64, lt: _F64 | None = ...,
) -> int: ...
def accumulate_round_batched(
    dist: KernelDist, blocks: _I64, slots: _I64,
    n: int, block_size: int, n_streams: int, n_threads: int,
    xt: _F64, fx: _F64, fcol: _I64, stats: _F64, shifts: _F64, lt: _F64 | None = ...,
) -> None: ...
def gather_round(
    dist: KernelDist, blocks: _I64, n: int, block_size: int, n_threads: int,
    xt: _F64, out: NDArray[np.float64] | NDArray[np.int64],
) -> None: ...
def accumulate_rows_batched(
    dist: KernelDist, blocks: _I64, slots: _I64,
    n: int, block_size: int, n_streams: int, n_threads: int,
    xt: _F64 | None, pieces: list[NDArray[np.float64]], fcol: _I64, stats: _F64,
    shifts: _F64, lt: _F64 | None = ..., cats: NDArray[np.int32] | None = ...,
) -> None: ...
def first_nonfinite(v: _F64) -> int: ...
def batched_category_totals(
    stats: _F64, shifts: _F64, fcol: _I64, n_units: int, n_cat: int,
) -> tuple[_F64, _F64, _F64, _F64, _F64, _F64, _F64]: ...
def draw_categorical_rows(
    dist: KernelDist, bitgens: list[Any], blocks: _I64, slots: _I64,
    n: int, block_size: int, n_threads: int, x: NDArray[np.int64], cats: NDArray[np.int32],
    counter: NDArray[np.longlong] | None = ...,
) -> None: ...
def stream_totals(
    stats: NDArray[np.float64], shifts: NDArray[np.float64], n_coords: int
) -> tuple[float, float, float, float, NDArray[np.float64]]: ...
def alias_table(probs: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]: ...
def totals_algebra(
    M: NDArray[np.float64], c0: float, n: float, G: float, H: float, mode: int, b: float = ...
) -> tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float, float,
    NDArray[np.float64],
]: ...
def score_totals(
    stats: NDArray[np.float64], shifts: NDArray[np.float64], n_coords: int, mode: int,
    b: float = ...
) -> tuple[
    float, float, float, float, float, NDArray[np.float64], NDArray[np.float64],
    NDArray[np.float64], float, float, float, float,
]: ...
def pcg64_seed_state(entropy: int | Sequence[int]) -> dict[str, Any]: ...
def pcg64_set_streams(bitgens: list[Any], streams: Any, root_state: dict[str, Any], jump: int,
                      dense: bool) -> bool: ...
PCG64_STATES_IN_C: bool
