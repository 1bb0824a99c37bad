"""A desk's exotic: Greeks of a knock-out worst-of on three correlated stocks
==========================================================================

The payoff is a plain vectorised function of the simulated paths (shape
``(m, steps + 1, assets)``): a call on the worst performer that dies when the
best performer has risen 50% on any monitoring date.  It is discontinuous and
path dependent, so ``mcscore.finance.greeks`` uses likelihood-ratio weights
(the Gaussian scores of the correlated increments): delta and vega per asset,
the full gamma matrix with cross-gammas, rho and theta, each with its
standard error.  As a check, Margrabe's exchange option (closed form) is
priced by the same engine on two of the stocks.

    python examples/desk.py            # full run
    python examples/desk.py --quick    # a few seconds (CI)
"""
import argparse
import math

import numpy as np
from scipy import special

import mcscore as mc

fi = mc.finance

SPOT = np.array([100.0, 50.0, 80.0])
VOL = np.array([0.25, 0.35, 0.3])
DIVIDEND = np.array([0.02, 0.0, 0.01])
CORR = np.array([[1.0, 0.6, 0.4], [0.6, 1.0, 0.5], [0.4, 0.5, 1.0]])
RATE, MATURITY, STEPS = 0.03, 1.0, 12


def knock_out_worst_of(paths):
    """Worst performance call (strike 85%) that knocks out at +50% on the best."""
    perf = paths / SPOT                       # (m, steps + 1, 3)
    alive = perf.max(axis=2).max(axis=1) < 1.5
    worst = perf[:, -1, :].min(axis=1)
    return alive * np.maximum(worst - 0.85, 0.0) * 100.0


def margrabe(s1, s2, v1, v2, rho, q1, q2, t):
    v = math.sqrt(v1 * v1 + v2 * v2 - 2 * rho * v1 * v2)
    d1 = (math.log(s1 / s2) + (q2 - q1 + 0.5 * v * v) * t) / (v * math.sqrt(t))
    return (s1 * math.exp(-q1 * t) * special.ndtr(d1)
            - s2 * math.exp(-q2 * t) * special.ndtr(d1 - v * math.sqrt(t)))


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short run (CI)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n = 100_000 if args.quick else 2_000_000
    g = fi.greeks(knock_out_worst_of, spot=SPOT, vol=VOL, dividend=DIVIDEND, correlation=CORR,
                  rate=RATE, maturity=MATURITY, steps=STEPS, n=n, rng=args.seed)
    print("knock-out worst-of, likelihood ratio:")
    print(g)

    # the engine against a closed form: exchange asset 1 for asset 3
    two = dict(spot=SPOT[[0, 2]], vol=VOL[[0, 2]], dividend=DIVIDEND[[0, 2]],
               correlation=CORR[np.ix_([0, 2], [0, 2])], rate=RATE, maturity=MATURITY)
    e = fi.greeks(fi.exchange(), n=n, rng=args.seed + 1, method="pathwise", **two)
    exact = margrabe(SPOT[0], SPOT[2], VOL[0], VOL[2], CORR[0, 2], DIVIDEND[0], DIVIDEND[2],
                     MATURITY)
    z = (e.price - exact) / e.stderr["price"]
    print(f"exchange option: {e.price:.4f} +/- {e.stderr['price']:.4f} "
          f"(Margrabe {exact:.4f}, z = {z:+.2f})")
    return {"worst_of": g, "exchange": e, "margrabe": exact, "z": z}


if __name__ == "__main__":
    main()
