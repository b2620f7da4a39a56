#!/usr/bin/env bash
# Every row of the README's results table, and its figures, from the stored runs in benchmarks/results/:
#
#     bash benchmarks/results.sh            # reads the stored histories (about a minute)
#     bash benchmarks/results.sh --train    # trains every run again (many CPU-hours), then the same
#
# Each curves.py line prints a task's rows (seeds solved, steps to solve, still solved, last evaluation,
# the first goal) and draws its curves; compare.py prints the medians, P(worse) and permutation p-values
# against reward alone (epistemic_weight=0), the rule the record judges by.
set -euo pipefail
cd "$(dirname "$0")/.."
REUSE="--reuse"
if [ "${1:-}" = "--train" ]; then REUSE=""; fi
C="python benchmarks/curves.py"
P="python benchmarks/compare.py"
FIVE="--seeds 0 1 2 3 4"
TEN="--seeds 0 1 2 3 4 5 6 7 8 9"
RA="epistemic_weight=0"
PAPER="raw_epistemic=true,epistemic_weight=1,precision=1,precision_learning_rate=0,efe_nets=1"
PAPER="$PAPER,ensemble_size=1,hidden_size=100,hidden_layers=1"  # dai.PAPER_AGENT
CORRIDOR='env_kwargs={"desc": ["SFFFFFFFFFFFFFFFFFFFFFFFFFFFFG"], "is_slippery": false, "max_episode_steps": 100}'

for n_steps in "10 20000" "15 30000" "20 40000"; do
    set -- $n_steps
    $C tasks:DeepSea-v0 $FIVE --steps "$2" --goal 0.5 --threshold 0.9 --name "n$1" \
        --set "env_kwargs={\"size\": $1}" $REUSE --configs "n$1_loggain" "n$1_reward_alone:$RA"
done
python benchmarks/deep_sea.py --sizes 10 15 20
$C CartPole-v1 $TEN --steps 50000 --goal 499 --name default $REUSE --configs loggain_50k "reward_alone_50k:$RA" \
    "paper_50k:$PAPER"
$P CartPole-v1 $TEN --goal 499 --reference reward_alone_50k --labels loggain_50k
$P CartPole-v1 $TEN --goal 499 --reference pair_plr6 --labels loggain_50k  # the default of ffe166f, 17.5k
$C MountainCar-v0 $TEN --steps 50000 --goal -200 --name gain_50k $REUSE --configs loggain_50k "reward_alone_50k:$RA"
$P MountainCar-v0 $TEN --goal -200 --reference reward_alone_50k --labels loggain_50k
$C Acrobot-v1 $FIVE --steps 100000 --goal -500 --threshold -100 --name gain_100k $REUSE \
    --configs loggain_100k "reward_alone_100k:$RA"
$P Acrobot-v1 $FIVE --goal -500 --threshold -100 --reference reward_alone_100k --labels loggain_100k
$C FrozenLake-v1 $FIVE --steps 30000 --goal 0 --threshold 1 --name 8x8 \
    --set 'env_kwargs={"map_name": "8x8", "is_slippery": false}' $REUSE --configs 8x8_loggain "8x8_reward_alone:$RA"
$P FrozenLake-v1 $FIVE --goal 0 --threshold 1 --reference 8x8_reward_alone --labels 8x8_loggain
$C FrozenLake-v1 $FIVE --steps 20000 --goal 0 --threshold 1 --name corridor --set "$CORRIDOR" $REUSE \
    --configs corridor_loggain "corridor_reward_alone:$RA"
$C LunarLander-v3 --seeds 0 1 2 3 --steps 500000 --threshold 200 --name lunar_500k $REUSE \
    --configs loggain_500k "reward_alone_500k:$RA"
$P LunarLander-v3 --seeds 0 1 2 3 --threshold 200 --reference reward_alone_500k --labels loggain_500k
for task in "CostlyCorridor-v0 costly" "NoisyCorridor-v0 noisy"; do
    set -- $task
    $C "tasks:$1" $FIVE --steps 20000 --goal 0 --threshold 0.98 --name "$2" $REUSE --configs loggain "reward_alone:$RA"
done
