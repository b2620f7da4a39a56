"""Steps, wall time and stability to solve a task with dai.py, on the protocol of the baselines.

    python benchmarks/solve.py CartPole-v1 --seeds 0 1 2 3 4
    python benchmarks/solve.py Acrobot-v1 --seeds 0 1 2 --steps 100000 --set learning_rate=5e-4

Protocol (benchmarks/BASELINES.md): gymnasium.make(env_id); a separate evaluation env seeded
seed + 10000; every 2,500 env steps, 20 episodes with the policy's mode; *solved* = first
evaluation whose mean reaches the env's reward threshold (475 for CartPole-v1, -100 for
Acrobot-v1). Wall seconds exclude evaluation time. Seeds run in parallel processes, one core each.
"""

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core per run, before NumPy loads
os.environ.setdefault("OMP_NUM_THREADS", "1")

from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import dai  # noqa: E402


def parse_overrides(pairs):
    """["key=value", ...] -> {field: value} typed like the Config field."""
    types = {f.name: type(f.default) for f in dataclasses.fields(dai.Config)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"solve.py: error: unknown Config field {key!r}")
        kind = types[key]
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def run(cfg):
    _, history = dai.train(cfg, progress=None)
    return cfg.seed, history


def solve_summary(history, threshold):
    """Figures of one run: first solve, first of two consecutive solves, share of evaluations
    still solved after the first, mean of the last 5, final, wall seconds and steps per second."""
    steps, returns = history["eval_step"], np.array(history["eval_return"])
    solved = returns >= threshold
    first = int(np.argmax(solved)) if solved.any() else None
    twice = next((i for i in range(len(solved) - 1) if solved[i] and solved[i + 1]), None)
    seconds = history["eval_train_seconds"]
    return {
        "solved_at": steps[first] if first is not None else None,
        "solved_twice_at": steps[twice] if twice is not None else None,
        "stay_solved": float(solved[first + 1:].mean()) if first is not None and first + 1 < len(solved) else None,
        "last5": float(returns[-5:].mean()),
        "final": float(returns[-1]),
        "seconds_to_solve": seconds[first] if first is not None else None,
        "steps_per_second": steps[-1] / seconds[-1],
        "curve": returns,
    }


def fmt(x, spec=""):
    """x formatted with spec, or "-" for None (a seed that never solved, a median of nothing)."""
    return "-" if x is None else format(x, spec)


def median(values):
    """The median of values, or None when there are none."""
    return float(np.median(values)) if len(values) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="total_steps (default: Config's)")
    parser.add_argument("--threshold", type=float, default=None, help="default: the env's reward_threshold")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Config overrides")
    args = parser.parse_args()

    threshold = args.threshold if args.threshold is not None else gym.spec(args.env_id).reward_threshold
    overrides = parse_overrides(args.set)
    if args.steps:
        overrides["total_steps"] = args.steps
    configs = [dai.Config(env_id=args.env_id, seed=seed, **overrides) for seed in args.seeds]
    print(f"# {args.env_id}, threshold {threshold}, overrides {overrides or 'none'}, {args.jobs} processes")
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for seed, history in pool.map(run, configs):
            row = solve_summary(history, threshold)
            rows.append(row)
            print(f"seed {seed}: solved_at {fmt(row['solved_at'])} | solved_twice_at {fmt(row['solved_twice_at'])} | "
                  f"stay_solved {fmt(row['stay_solved'], '.0%')} | last5 {row['last5']:.1f} | final {row['final']:.1f} | "
                  f"seconds_to_solve {fmt(row['seconds_to_solve'], '.1f')} | steps_per_second {row['steps_per_second']:.0f} | "
                  f"curve {' '.join(f'{x:.0f}' for x in row['curve'])}", flush=True)

    solved = [r for r in rows if r["solved_at"] is not None]
    over_solved = lambda key: median([r[key] for r in solved])
    finals = [r["final"] for r in rows]
    stay_known = all(r["stay_solved"] is not None for r in solved)
    print(f"summary: solved {len(solved)}/{len(rows)} | solved_at median {fmt(over_solved('solved_at'), '.0f')} "
          f"[{fmt(min((r['solved_at'] for r in solved), default=None))}-{fmt(max((r['solved_at'] for r in solved), default=None))}] | "
          f"stay_solved median {fmt(over_solved('stay_solved') if stay_known else None, '.0%')} | "
          f"final {' '.join(f'{x:.0f}' for x in finals)} (final >= threshold on {sum(f >= threshold for f in finals)}) | "
          f"seconds_to_solve median {fmt(over_solved('seconds_to_solve'), '.1f')} | "
          f"steps_per_second median {np.median([r['steps_per_second'] for r in rows]):.0f}")


if __name__ == "__main__":
    main()
