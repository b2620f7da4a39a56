"""Is a form worse than the reference? A rank test per measure on stored histories (from curves.py).

    python benchmarks/compare.py CartPole-v1 --seeds 0 1 2 3 4 5 6 7 8 9 \\
        --reference epistemic_weight_0 --labels default standardised_10pct head_10pct
    python benchmarks/compare.py MountainCar-v0 --seeds 0 1 2 3 4 5 6 7 8 9 --threshold -110 --goal -200 \\
        --reference lambda_0_200k --labels standardised_10pct_200k

Issue 5's test asks whether a form is "no worse" than reward alone on medians over 5-10 seeds.
Seed to seed, one form's steps to solve vary more than the forms' medians differ, so each measure
is given with two figures beside the medians:
  P(worse): the chance that a seed of the form does worse than a seed of the reference (ties count
    half), the Mann-Whitney U over n_form * n_reference; 0.5 when neither is better.
  p worse: how often seeds relabelled at random (permutations of the pooled seeds) give a P(worse)
    at least as large: a one-sided test of "the form is worse", small when the gap is unlikely to
    be luck. p better: the same test the other way round (e.g. "the first goal comes sooner").
A seed that never solves (never reaches the goal) ranks last on steps to solve (first goal); it has
no share still solved, so that measure leaves it out (n says how many seeds count).
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from curves import goal_steps, read_history  # noqa: E402
from solve import fmt, median, solve_summary  # noqa: E402


def p_worse(form, reference):
    """P(a seed of `form` is worse than one of `reference`), ties counted half, for measures
    where larger is worse: U / (n_form n_reference)."""
    x, y = np.asarray(form, float)[:, None], np.asarray(reference, float)[None, :]  # (n_form, 1), (1, n_ref)
    return float(np.mean((x > y) + 0.5 * (x == y)))


def permutation_p(form, reference, draws=20_000, seed=0):
    """Share of random relabellings of the pooled seeds whose p_worse() is at least the observed one."""
    pooled, n = np.concatenate([np.asarray(form, float), np.asarray(reference, float)]), len(form)
    observed = p_worse(form, reference)
    rng = np.random.default_rng(seed)
    hits = sum(p_worse(perm[:n], perm[n:]) >= observed - 1e-12
               for perm in (rng.permutation(pooled) for _ in range(draws)))
    return (hits + 1) / (draws + 1)  # the observed labelling counts as one draw


# measure: (sign that makes larger worse, format of its median)
MEASURES = {"steps to solve": (1, ".0f"), "share still solved": (-1, ".0%"), "final eval": (-1, ".1f"),
            "first goal": (1, ".0f")}


def measures(history, threshold, goal):
    """One run's measures in their own units (inf: never solved or reached; None: not defined)."""
    summary = solve_summary(history, threshold)
    out = {"steps to solve": summary["solved_at"] if summary["solved_at"] is not None else np.inf,
           "share still solved": summary["stay_solved"], "final eval": summary["final"]}
    if goal is not None:
        out["first goal"] = (goal_steps(history, goal) or [np.inf])[0]
    return out


def show(values, measure):
    """The median of one form's values, and how many seeds solved (reached the goal) or count."""
    finite = [v for v in values if np.isfinite(v)]
    m = median(values)
    text = fmt(m if m is not None and np.isfinite(m) else None, MEASURES[measure][1])
    return f"{text} ({len(finite)}/{len(values)})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--reference", required=True, help="the label to compare against, e.g. epistemic_weight_0")
    parser.add_argument("--labels", nargs="+", required=True, help="labels of the stored histories to test")
    parser.add_argument("--threshold", type=float, default=None, help="default: the env's reward_threshold")
    parser.add_argument("--goal", type=float, default=None,
                        help="a training episode with a return above this reached the goal")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    threshold = args.threshold
    if threshold is None:
        import gymnasium as gym
        threshold = gym.spec(args.env_id).reward_threshold
    try:
        table = {label: [measures(read_history(args.out, args.env_id, label, seed), threshold, args.goal)
                         for seed in args.seeds] for label in (args.reference, *args.labels)}
    except FileNotFoundError as e:
        parser.error(f"no stored history {e.filename}: run curves.py for that label and seed first")
    print(f"# {args.env_id}, threshold {threshold:g}, seeds {args.seeds}; medians (seeds that count), "
          f"P(worse) and one-sided p against {args.reference}")
    for measure in table[args.reference][0]:
        sign = MEASURES[measure][0]
        ref = [m[measure] for m in table[args.reference] if m[measure] is not None]
        print(f"{measure}: {args.reference} {show(ref, measure)}")
        for label in args.labels:
            form = [m[measure] for m in table[label] if m[measure] is not None]
            if not form or not ref:
                print(f"    {label} {show(form, measure)} | no test: no seed counts on one side")
                continue
            worse = [sign * v for v in form], [sign * v for v in ref]
            better = worse[1], worse[0]
            print(f"    {label} {show(form, measure)} | P(worse) {p_worse(*worse):.2f} | "
                  f"p worse {permutation_p(*worse):.3f} | p better {permutation_p(*better):.3f}")


if __name__ == "__main__":
    main()
