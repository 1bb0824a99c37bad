"""Cart-pole balancing learned by REINFORCE (linear softmax policy)
================================================================

Self-contained: the environment is ``mcscore.rl.CartPole`` (the classic
equations, vectorised over episodes).  Each iteration rolls out a batch of
episodes, forms the returns-to-go and the policy gradient with the
leave-one-out baseline (``mcscore.rl.policy_gradient``), and takes an Adam
step.  With matplotlib installed it writes the learning curve.

    python examples/cartpole.py                  # full run, figure in ./mcscore-figures
    python examples/cartpole.py --quick          # a few seconds (CI)
    python examples/cartpole.py --plot out.png
"""
import argparse
import os
import sys

import numpy as np

import mcscore as mc


def plot_curve(returns, stderr, path, title="REINFORCE on cart-pole"):
    """Write the learning curve to path; returns the path or None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    it = np.arange(1, len(returns) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(it, returns, lw=1.5, label="mean return of the batch")
    ax.fill_between(it, returns - 2 * stderr, returns + 2 * stderr, alpha=0.3,
                    label="+/- 2 standard errors")
    ax.set_xlabel("iteration")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short run (CI)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per iteration")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=os.path.join("mcscore-figures", "cartpole.png"),
                   help="figure path ('' for none)")
    args = p.parse_args(argv)
    iterations = 40 if args.quick else 100
    env = mc.rl.CartPole(max_steps=200)
    policy = mc.rl.SoftmaxPolicy(env.n_features, env.n_actions)
    run = mc.rl.reinforce(env, policy, iterations=iterations, episodes=args.episodes, lr=args.lr,
                          rng=args.seed, progress=not args.quick)
    k = 5
    print(f"mean return: first {k} iterations {run.returns[:k].mean():.1f}, "
          f"last {k} {run.returns[-k:].mean():.1f} (maximum {env.max_steps})")
    path = plot_curve(run.returns, run.returns_stderr, args.plot) if args.plot else None
    if path:
        print(f"learning curve written to {os.path.abspath(path)}")
    elif args.plot:
        print("(matplotlib is not installed: no figure)")
    return {"returns": run.returns, "policy": run.policy, "figure": path}


if __name__ == "__main__":
    out = main()
    if not (out["returns"][-5:].mean() > out["returns"][:5].mean()):
        sys.exit(1)  # the goal was not reached (a plain return keeps the docs gallery running)
