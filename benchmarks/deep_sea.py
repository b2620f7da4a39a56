"""Deep Sea: the steps to the first treasure against the size N, for the default and reward alone.

    python benchmarks/deep_sea.py                      # from the stored runs in benchmarks/results/

Reads the histories curves.py stored for tasks:DeepSea-v0 under the labels nN_loggain (the default) and
nN_reward_alone (N = 10, 15, 20; seeds 0-4), prints for each the first training episode that found
the treasure (return above 0.5), the seeds that found it, the seeds whose last evaluation holds it
(0.9 or more), and draws the first treasure against N, a seed that never found it at its budget.
"""

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from curves import goal_steps, read_history  # noqa: E402

FORMS = {"loggain": "dai.py", "reward_alone": "reward alone (λ = 0)"}


def first_treasures(out, sizes, seeds):
    """{(form, N): [(first treasure step or None, budget, last evaluation), per seed]} of the stored runs."""
    table = {}
    for form in FORMS:
        for n in sizes:
            runs = []
            for seed in seeds:
                h = read_history(out, "tasks:DeepSea-v0", f"n{n}_{form}", seed)
                runs.append(((goal_steps(h, 0.5) or [None])[0], h["eval_step"][-1], h["eval_return"][-1]))
            table[form, n] = runs
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 15, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    table = first_treasures(args.out, args.sizes, args.seeds)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    for i, form in enumerate(FORMS):
        medians = []
        for n in args.sizes:
            runs = table[form, n]
            firsts = [f if f is not None else budget for f, budget, _ in runs]
            found = [f for f, _, _ in runs if f is not None]
            held = sum(last >= 0.9 for _, _, last in runs)
            print(f"N {n}, {form}: first treasure {' '.join('-' if f is None else str(int(f)) for f, _, _ in runs)} | "
                  f"found on {len(found)}/{len(runs)} | last evaluation >= 0.9 on {held}/{len(runs)} | "
                  f"budget {int(runs[0][1])}")
            x = n + (i - 0.5) * 0.3
            ax.scatter([x] * len(found), found, marker="o", alpha=0.6, color=f"C{i}")
            missed = [budget for f, budget, _ in runs if f is None]
            ax.scatter([x] * len(missed), missed, marker="x", alpha=0.6, color=f"C{i}")
            medians.append(np.median(firsts))
        ax.plot(args.sizes, medians, color=f"C{i}", label=f"{FORMS[form]}, median")
    ax.set_xlabel("N (the chain's depth)")
    ax.set_ylabel("env steps to the first treasure")
    ax.set_xticks(args.sizes)
    ax.set_title("Deep Sea: a dot per seed; a cross: none within its budget", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.out, "DeepSea-v0_first_treasure.png")
    fig.savefig(path)
    print(f"figure: {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
