"""A tiny MDP whose Q-function is known exactly, for the vine and restore tests.

States 0..4, observed one-hot. Actions 0 and 1 both mean "right", action 2 means "left"; a move
succeeds with probability 0.8, drawn from the env's own ``np_random`` in ``step`` (so restoring
it exactly needs the RNG state too). Reward ``0.1 s + 0.5 [a = 2]`` for the state s acted in,
plus 1 for reaching state 4, which ends the episode. Episodes start in a uniform state of 0..3.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from trpo_bench.envs.registry import ENV_SPECS, EnvSpec

ENV_ID = "NoisyChain-v0"
N_STATES, GOAL, P_MOVE = 5, 4, 0.8


class NoisyChain(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (N_STATES,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def __init__(self) -> None:
        self.s = 0

    def _obs(self) -> np.ndarray:
        return np.eye(N_STATES, dtype=np.float32)[self.s]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = int(self.np_random.integers(0, GOAL))
        return self._obs(), {}

    def step(self, action):
        reward = 0.1 * self.s + (0.5 if action == 2 else 0.0)
        if self.np_random.random() < P_MOVE:
            self.s = max(0, self.s - 1) if action == 2 else min(GOAL, self.s + 1)
        terminated = self.s == GOAL
        return self._obs(), reward + float(terminated), terminated, False, {}

    # The restore hook of trpo_bench.envs.restore (the RNG is restored by restore() itself).
    def snapshot_state(self) -> int:
        return self.s

    def restore_state(self, state: int) -> None:
        self.s = state


def register(monkeypatch) -> str:
    """Make ``ENV_ID`` known to gymnasium and (for this test) to the suite's env registry."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=NoisyChain, max_episode_steps=100_000)
    monkeypatch.setitem(
        ENV_SPECS,
        ENV_ID,
        EnvSpec(ENV_ID, "custom", "noisy chain", {"hidden_sizes": []}, gym_id=ENV_ID),
    )
    return ENV_ID


def exact_q(horizon: int, gamma: float, policy_probs: np.ndarray) -> np.ndarray:
    """``Q_H(s, a)``: expected discounted reward of taking a in s, then following the policy
    (``policy_probs[a]``, the same in every state) for ``horizon - 1`` more steps, by dynamic
    programming. Shape ``[N_STATES, 3]``; row 4 (terminal) is 0."""
    q = np.zeros((N_STATES, 3))
    v = np.zeros(N_STATES)
    for _ in range(horizon):
        q = np.zeros((N_STATES, 3))
        for s in range(GOAL):
            for a in range(3):
                moved = max(0, s - 1) if a == 2 else min(GOAL, s + 1)
                base = 0.1 * s + (0.5 if a == 2 else 0.0)
                for s2, p in ((moved, P_MOVE), (s, 1.0 - P_MOVE)):
                    end = s2 == GOAL
                    q[s, a] += p * (base + float(end) + (0.0 if end else gamma * v[s2]))
        v = q @ policy_probs
    return q
