"""A desk's strike strip: every Greek of an Asian basket at five strikes
=====================================================================

The payoff is a plain vectorised function of the simulated paths
``paths[p, k, i]`` (path p, date k = 0..steps, asset i) that returns one
column per strike, shape ``(m, 5)``; wrapping it in ``Payoff(fn,
grid=(5,))`` declares the strike axis, and every Greek of the result then
has that axis in front: price (5,), delta / vega / dividend sensitivity
(5, 2), gamma (5, 2, 2) with the cross-gamma, rho and theta (5,), each with
its standard error.  The Greeks are likelihood-ratio estimates (the Gaussian
scores of the correlated increments), so the payoff needs no derivative.

As a check, the same strip of a payoff whose answer is known (a European
call on the first stock, a "basket" with weights (1, 0)) is compared with
Black-Scholes with a dividend yield: z = (estimate - exact) / stderr.

    python examples/finance_desk.py            # full run
    python examples/finance_desk.py --quick    # a few seconds (CI)
"""
import argparse
import math

import numpy as np
from scipy import special

import mcscore as mc

fi = mc.finance

SPOT = np.array([100.0, 80.0])
VOL = np.array([0.25, 0.35])
DIVIDEND = np.array([0.02, 0.0])
CORR = np.array([[1.0, 0.6], [0.6, 1.0]])
RATE, MATURITY, STEPS = 0.03, 1.0, 12
STRIKES = np.array([80.0, 85.0, 90.0, 95.0, 100.0])
WEIGHTS = np.array([0.5, 0.5])


def asian_basket(paths):
    """Call on the monthly average of the basket, one column per strike."""
    basket = paths[:, 1:, :] @ WEIGHTS            # (m, steps)
    return np.maximum(basket.mean(axis=1)[:, None] - STRIKES, 0.0)


def first_stock_call(paths):
    return np.maximum(paths[:, -1, 0][:, None] - STRIKES, 0.0)


def bs_call(S, K, r, q, s, T):
    sq = s * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q + 0.5 * s * s) * T) / sq
    return S * math.exp(-q * T) * special.ndtr(d1) - K * math.exp(-r * T) * special.ndtr(d1 - sq)


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short run (CI)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    market = dict(spot=SPOT, vol=VOL, dividend=DIVIDEND, correlation=CORR, rate=RATE,
                  maturity=MATURITY, steps=STEPS, n=n, rng=args.seed)

    g = fi.greeks(fi.Payoff(asian_basket, grid=(len(STRIKES),), assets=2), **market)
    print(f"Asian basket call, {n} paths, {STEPS} dates: each Greek +/- its standard error")
    print(f"{'strike':>7} {'price':>16} {'delta_1':>16} {'delta_2':>16} {'gamma_12':>18} "
          f"{'theta':>14}")
    for c, K in enumerate(STRIKES):
        def pm(name, *idx):
            v, s = np.asarray(getattr(g, name))[(c,) + idx], np.asarray(g.stderr[name])[(c,) + idx]
            return f"{v:.4g} +/- {s:.2g}"
        print(f"{K:>7.1f} {pm('price'):>16} {pm('delta', 0):>16} {pm('delta', 1):>16} "
              f"{pm('gamma', 0, 1):>18} {pm('theta'):>14}")

    # the check: a strip with a closed form, priced by the same machinery
    chk = fi.greeks(fi.Payoff(first_stock_call, grid=(len(STRIKES),), assets=2), **market)
    exact = np.array([bs_call(SPOT[0], K, RATE, DIVIDEND[0], VOL[0], MATURITY) for K in STRIKES])
    z = (chk.price - exact) / chk.stderr["price"]
    print("check, European call on stock 1 vs Black-Scholes: z =", np.round(z, 2))
    return {"strip": g, "z": z}


if __name__ == "__main__":
    main()
