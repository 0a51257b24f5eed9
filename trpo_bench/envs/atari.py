"""Atari from pixels (the paper's sec. 8.2) through ale-py and gymnasium.

Every choice here is a config key and so lands in summary.json:

* ``atari_frame_skip`` (4): each agent step repeats the action for that many emulator frames
  (ALE's own frame skip, no max-pooling over the last two frames);
* ``atari_sticky_actions`` (0.0): the probability that the emulator repeats the previous action
  instead (ALE v5's default is 0.25; the 2015 setting had none, so the paper preset keeps 0);
* frames: the emulator's grayscale screen (210 x 160), its top 208 rows mean-pooled over 4 x 4
  blocks to 52 x 40 uint8; the last ``atari_frame_stack`` (4) frames are stacked, giving
  observations of shape ``(4, 52, 40)`` that stay uint8 until the policy's forward pass. With
  the paper's network (two 4 x 4 stride-2 convolutions of 16 channels, a fully connected layer
  of 20 units) this gives about 33,500 parameters, as the paper's Table 3 states;
* an episode is a whole game (no end on life loss), cut by ALE's limit of 108,000 frames;
* ``clip_rewards`` (off): train on sign(r) if set; every reported return is the raw score.

A seeded reset (every env, every iteration) makes ale-py reload the ROM, 85 ms per env. Without
sticky actions the emulator draws no random numbers, so the state a seeded reset reaches does not
depend on the seed: ``AtariPixels`` keeps that state from its first seeded reset and restores it
for later ones (5 ms). ``tests/test_atari.py`` checks that the frames that follow are identical to
a freshly loaded game's. With sticky actions on, every seeded reset reloads the ROM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import gymnasium as gym
import numpy as np

POOL = 4
CROP_ROWS = 208  # 210 screen rows -> 52 pooled rows


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_retained = False


def retain_freed_memory() -> bool:
    """Keep memory that torch frees inside the process for its next allocations (glibc only).

    glibc serves every block above 32 MB with a fresh ``mmap`` and unmaps it when freed, so
    the next block of the same size is faulted in again, page by page. A pixel batch's update
    does that many times per iteration: the Fisher-vector products' double-backprop graph
    over 10K frames (buffers of 300 MB) and each 512-frame chunk's buffers. Measured on a
    paper-preset Pong iteration (100K frames): 5 s of system time in 3M page faults out of a
    21 s update, and the chunked forward passes at 59 instead of 40 us per frame. With
    ``M_MMAP_MAX`` 0 every block comes from the heap and with a 2 GB ``M_TRIM_THRESHOLD`` the
    heap is not given back, so freed blocks are reused without faults; the price is a
    resident size near the iteration's peak (4.9 instead of 3.7 GB measured). Arithmetic is
    untouched. Returns whether the settings took (False where the C library has no mallopt).
    """
    global _retained
    if _retained:
        return True
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    _retained = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _retained


def register() -> None:
    """Make the ``ALE/...`` ids known to gymnasium (the ROMs ship inside ale-py)."""
    import ale_py

    gym.register_envs(ale_py)


class AtariPixels(gym.Wrapper):
    """Pool the grayscale screen to 52 x 40 and stack the last ``k`` frames (uint8).

    The stack lives in one array, ``self.frames``, so that a snapshot of the env is the ALE
    state plus a copy of it (``trpo_bench.envs.restore``).
    """

    def __init__(self, env: gym.Env, frame_stack: int, sticky_actions: float = 0.0) -> None:
        super().__init__(env)
        height, width = env.observation_space.shape
        self.k = frame_stack
        shape = (frame_stack, CROP_ROWS // POOL, width // POOL)
        self.frames = np.zeros(shape, dtype=np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, shape, dtype=np.uint8)
        assert height >= CROP_ROWS, height
        # The emulator is deterministic without sticky actions: a seeded reset always reaches
        # the same state, kept here (ALE state, first screen) after the first one.
        self.deterministic = sticky_actions == 0.0
        self._fresh_game: tuple[Any, np.ndarray] | None = None

    @staticmethod
    def _pool(screen: np.ndarray) -> np.ndarray:
        """floor(mean of each 4 x 4 block) of the top 208 rows: strided integer sums, about
        10x faster than ``reshape(...).mean(axis=(1, 3))`` (the same numbers)."""
        x = screen[:CROP_ROWS].astype(np.uint16)
        rows = x[0::4] + x[1::4] + x[2::4] + x[3::4]
        blocks = rows[:, 0::4] + rows[:, 1::4] + rows[:, 2::4] + rows[:, 3::4]
        return (blocks >> 4).astype(np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        """Start a new game; ``seed`` makes it a freshly loaded one (see the module docstring)."""
        if seed is not None and self.deterministic and self._fresh_game is not None:
            state, screen = self._fresh_game
            ale = self.env.unwrapped.ale
            # reset_game first: it re-initialises ALE's per-game bookkeeping (lives, terminal
            # flags), which the emulator state does not hold (Q*bert's episode ends differ
            # without it); the restored state then replaces the emulator's.
            ale.reset_game()
            ale.restoreState(state)
            info = self.env.unwrapped._get_info()
        else:
            screen, info = self.env.reset(seed=seed, options=options)
            if seed is not None and self.deterministic:
                self._fresh_game = (self.env.unwrapped.ale.cloneState(), screen.copy())
        self.frames[:] = self._pool(screen)
        return self.frames.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        screen, reward, terminated, truncated, info = self.env.step(action)
        self.frames[:-1] = self.frames[1:]
        self.frames[-1] = self._pool(screen)
        return self.frames.copy(), reward, terminated, truncated, info


def make_atari_env(
    gym_id: str, frame_skip: int = 4, frame_stack: int = 4, sticky_actions: float = 0.0
) -> gym.Env:
    """One Atari env as the suite trains on it (see the module docstring); the process keeps
    freed memory from then on (:func:`retain_freed_memory`)."""
    register()
    retain_freed_memory()
    env = gym.make(
        gym_id,
        obs_type="grayscale",
        frameskip=frame_skip,
        repeat_action_probability=sticky_actions,
        full_action_space=False,
        disable_env_checker=True,
    )
    return AtariPixels(env, frame_stack, sticky_actions)
