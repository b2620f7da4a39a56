"""Small tasks of this project's own, registered with Gymnasium on import.

    python benchmarks/curves.py tasks:CostlyCorridor-v0 --steps 20000 --goal 0 --threshold 0.99 ...

CostlyCorridor-v0: FrozenLake's 30-cell corridor (start at the left end, the goal at the right end,
four actions of which only left and right move), with a small cost for every step to the right:
0.01 / 30, so that a walk to the goal costs 0.01 in all against its reward of 1. Episodes differ in
return from the first one on, as with any per-step cost, while the goal stays as hard to find as
in the corridor without costs.
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


gym.register("CostlyCorridor-v0", entry_point=CostlyCorridor, max_episode_steps=100)
