"""Small tasks of this project's own, registered with Gymnasium on import.

    python benchmarks/curves.py tasks:CostlyCorridor-v0 --steps 20000 --goal 0 --threshold 0.99 ...
    python benchmarks/curves.py tasks:DeepSea-v0 --steps 40000 --set 'env_kwargs={"size": 20}' ...

CostlyCorridor-v0: FrozenLake's 30-cell corridor (start at the left end, the goal at the right end,
four actions of which only left and right move), with a small cost for every step to the right:
0.01 / 30, so that a walk to the goal costs 0.01 in all against its reward of 1. Episodes differ in
return from the first one on, as with any per-step cost, while the goal stays as hard to find as
in the corridor without costs.

DeepSea-v0: bsuite's deep-exploration chain. An N x N grid seen as a one-hot position; the agent
starts at the top left and falls one row a step, moving one column left or right, so an episode
is N steps. Which of the two actions means "right" is drawn once per cell (from `map_seed`), so no
action is right everywhere. Each move right costs 0.01 / N; a move right from the last column
pays 1, which only the one path of N moves right reaches: 1 in 2^N for a uniformly random policy.

NoisyCorridor-v0: the 30-cell corridor of CostlyCorridor (left, right, and stay), observed as a
one-hot position plus one more entry, and a fifth action, the "noisy TV", that stays in place and
sets that entry to a fresh standard normal draw (the other actions set it to 0). What the TV shows
cannot be predicted; a curious agent that is paid for its surprise watches it for ever.
"""

import gymnasium as gym
import numpy as np


class CostlyCorridor(gym.Env):
    LEFT, RIGHT = 0, 2  # FrozenLake's action numbers; 1 (down) and 3 (up) stay in place

    def __init__(self, length=30, cost=0.01):
        self.length, self.step_cost = length, cost / length
        self.observation_space, self.action_space = gym.spaces.Discrete(length), gym.spaces.Discrete(4)
        self.position = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return self.position, {}

    def step(self, action):
        move = {self.LEFT: -1, self.RIGHT: 1}.get(int(action), 0)
        self.position = int(np.clip(self.position + move, 0, self.length - 1))
        at_goal = self.position == self.length - 1
        reward = float(at_goal) - self.step_cost * (move == 1)
        return self.position, reward, at_goal, False, {}


class DeepSea(gym.Env):
    def __init__(self, size=10, map_seed=0):
        self.size = size
        self.right_action = np.random.default_rng(map_seed).integers(0, 2, size=(size, size))  # per cell
        self.observation_space, self.action_space = gym.spaces.Discrete(size * size), gym.spaces.Discrete(2)
        self.row = self.column = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.row = self.column = 0
        return 0, {}

    def step(self, action):
        right = int(action) == self.right_action[self.row, self.column]
        reward = float(right and self.column == self.size - 1) - 0.01 / self.size * right  # as bsuite
        self.column = int(np.clip(self.column + (1 if right else -1), 0, self.size - 1))
        self.row += 1
        at_bottom = self.row == self.size
        position = min(self.row, self.size - 1) * self.size + self.column  # the last row's cell at the end
        return position, reward, at_bottom, False, {}


class NoisyCorridor(CostlyCorridor):
    TV = 4

    def __init__(self, length=30, cost=0.01):
        super().__init__(length, cost)
        self.action_space = gym.spaces.Discrete(5)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (length + 1,), np.float32)

    def observe(self, screen):
        obs = np.zeros(self.length + 1, np.float32)
        obs[self.position], obs[-1] = 1.0, screen
        return obs

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observe(0.0), {}

    def step(self, action):
        tv = int(action) == self.TV
        position, reward, terminated, truncated, info = super().step(1 if tv else action)
        return self.observe(self.np_random.standard_normal() if tv else 0.0), reward, terminated, truncated, info


gym.register("CostlyCorridor-v0", entry_point=CostlyCorridor, max_episode_steps=100)
gym.register("DeepSea-v0", entry_point=DeepSea)  # its episodes end by themselves after N steps
gym.register("NoisyCorridor-v0", entry_point=NoisyCorridor, max_episode_steps=100)
