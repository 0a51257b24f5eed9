"""Bring your own environment (issue 24): any id gymnasium can make runs with an inferred spec;
a package registers env specs through the entry-point group ``trpo_bench.envs``; vine runs
where the env restores exactly (a MuJoCo model of the package's own, not a gymnasium
``MujocoEnv``) and is refused in one line where it cannot; the workflow, tables, claims and
MLflow take the new envs like the built-in ones.

The demo package is installed by pip into a folder of its own (put on PYTHONPATH for the
subprocesses), as a user would install theirs.
"""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import yaml
from demo_package import install, site_env

from trpo_bench.config import ConfigError
from trpo_bench.envs.registry import (
    ENV_PLUGIN_GROUP,
    INFERRED_DEFAULTS,
    env_spec,
    make_env,
    plugin_specs,
)
from trpo_bench.envs.restore import restore, restore_problem, snapshot

ROOT = Path(__file__).resolve().parents[1]
DIST = "trpo-bench-demo-envs"

MODULE = '''
"""Two tiny tasks: a MuJoCo cart with a pole of this package's own model (not a gymnasium
MujocoEnv), and a counter with no restore hook."""
import gymnasium as gym
import mujoco
import numpy as np

XML = """
<mujoco>
  <option timestep="0.01"/>
  <worldbody>
    <body name="cart">
      <joint name="x" type="slide" axis="1 0 0" damping="0.1"/>
      <geom type="box" size="0.2 0.1 0.05" mass="1"/>
      <body name="pole">
        <joint name="hinge" type="hinge" axis="0 1 0" damping="0.01"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.6" size="0.03" mass="0.2"/>
      </body>
    </body>
    <geom type="plane" size="5 5 0.1" pos="0 0 -0.1"/>
  </worldbody>
  <actuator><motor joint="x" gear="5" ctrllimited="true" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


class TinySlider(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.model = mujoco.MjModel.from_xml_string(XML)
        self.data = mujoco.MjData(self.model)

    def _obs(self):
        return np.concatenate([self.data.qpos, self.data.qvel])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = self.np_random.uniform(-0.05, 0.05, 2)
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {}

    def step(self, action):
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=2)
        x, angle = self.data.qpos
        fell = abs(angle) > 0.8
        return self._obs(), 1.0 - 0.1 * abs(x), bool(fell), False, {}


class TinyCounter(gym.Env):
    observation_space = gym.spaces.Box(0.0, 50.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.n = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.n += int(action)
        return np.array([self.n], np.float32), float(action), self.n >= 20, False, {}


gym.register("TinySlider-v0", entry_point=TinySlider, max_episode_steps=200)
gym.register("TinyCounter-v0", entry_point=TinyCounter, max_episode_steps=50)

SLIDER_SPEC = {
    "family": "mujoco",
    "summary": "a cart-pole of this package's own MuJoCo model",
    "defaults": {"hidden_sizes": [16], "num_envs": 2, "steps_per_iter": 800, "iterations": 3},
    "reference": {
        "sources": {"demo-paper": "the demo package's own paper (made up for the test)"},
        "published_at": {"demo-paper": {"budget_steps": 1600}},
        "entries": [
            {"method": "trpo-single-path", "source": "demo-paper", "metric": "final_return",
             "value": 123.5}
        ],
        "normalization": {"random": 0.0, "best": 200.0},
    },
}
'''

SLIDER = "TinySlider-v0"
COUNTER = "trpo_demo_envs:TinyCounter-v0"  # no plug-in spec: the id imports the module


@pytest.fixture(scope="module")
def env_site(tmp_path_factory) -> Path:
    entry_points = {
        ENV_PLUGIN_GROUP: {
            SLIDER: "trpo_demo_envs:SLIDER_SPEC",
            "Broken-v0": "trpo_demo_envs:NOT_THERE",
        }
    }
    return install(
        tmp_path_factory.mktemp("envplugin"), DIST, "trpo_demo_envs", MODULE, entry_points
    )


def _env(site: Path) -> dict[str, str]:
    return site_env(site)


def _run(site: Path, *args: str, cwd: Path, module: str = "trpo_bench", timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=_env(site),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _replays_exactly(env_id: str, warmup: int = 30, steps: int = 300) -> None:
    """Same actions after a restore -> bit-identical observations, rewards and ends."""
    env = make_env(env_id)
    env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(warmup):
        env.step(env.action_space.sample())
    actions = [env.action_space.sample() for _ in range(steps)]
    snap = snapshot(env)
    first = [env.step(a)[:4] for a in actions]
    other = make_env(env_id)
    other.reset(seed=999)
    other.step(other.action_space.sample())
    restore(other, snap)
    second = [other.step(a)[:4] for a in actions]
    for (o1, r1, t1, u1), (o2, r2, t2, u2) in zip(first, second, strict=True):
        assert np.array_equal(o1, o2) and r1 == r2 and (t1, u1) == (t2, u2)


# --- any gymnasium id ------------------------------------------------------------------------


def test_an_unknown_gymnasium_id_gets_a_spec_inferred_from_the_env():
    ant = env_spec("Ant-v5")
    assert (ant.family, ant.source, ant.time_limit) == ("mujoco", "inferred", 1000)
    assert dict(ant.defaults) == dict(INFERRED_DEFAULTS)
    assert "AntEnv" in ant.summary and "Gaussian MLP" in ant.summary
    assert env_spec("Acrobot-v1").family == "classic"
    assert "categorical MLP" in env_spec("Acrobot-v1").summary
    assert env_spec("Pusher-v5").time_limit == 100
    assert env_spec("Hopper-v5").source == "built-in"  # a preset wins
    with pytest.raises(ConfigError, match=r"unknown env 'Nope-v3': gymnasium cannot make it"):
        env_spec("Nope-v3")


def test_vine_restores_ant_exactly_and_is_refused_where_it_cannot():
    _replays_exactly("Ant-v5")
    _replays_exactly("Pusher-v5")
    assert restore_problem(make_env("Ant-v5")) is None
    problem = restore_problem(make_env("Acrobot-v1"))
    assert "snapshot_state() -> state and restore_state(state)" in problem


def test_train_on_ant_without_a_preset(tmp_path):
    from trpo_bench import cli

    out = tmp_path / "ant"
    argv = ["train", "--env", "Ant-v5", "--out", str(out), "--iterations", "1"]
    assert cli.main([*argv, "--steps-per-iter", "1000", "--set", "mlflow=false", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["hidden_sizes"] == [64, 64] and summary["env_steps"] == 1000


# --- a package's own envs --------------------------------------------------------------------


def test_a_plugin_env_is_registered_and_a_broken_one_is_one_warning(env_site, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(env_site))
    found = plugin_specs({})
    assert list(found) == [SLIDER]
    assert found[SLIDER].family == "mujoco" and found[SLIDER].source == f"plug-in {DIST}"
    assert found[SLIDER].defaults["hidden_sizes"] == [16]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plug-in env 'Broken-v0'" in err[0] and "left out" in err[0]
    # A MuJoCo model of the package's own (not a gymnasium MujocoEnv) restores exactly.
    import trpo_demo_envs  # noqa: F401 - registers the envs with gymnasium

    assert type(gym.make(SLIDER).unwrapped).__mro__[1] is gym.Env
    _replays_exactly(SLIDER)


def test_the_cli_trains_resumes_and_refuses_vine_in_one_line(env_site, tmp_path):
    listed = _run(env_site, "envs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.startswith(SLIDER) and f"[plug-in {DIST}]" in line
        for line in listed.stdout.splitlines()
    )
    shown = _run(env_site, "envs", COUNTER, cwd=tmp_path)
    assert "family:     other" in shown.stdout and "vine:       refused:" in shown.stdout
    sets = ["--set", "mlflow=false", "--set", "checkpoint_every=1", "--quiet"]
    for method in ("trpo-single-path", "trpo-vine"):
        out = tmp_path / method
        common = ["train", "--env", SLIDER, "--method", method, "--out", str(out), *sets]
        first = _run(env_site, *common, "--iterations", "2", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        again = _run(env_site, *common, "--iterations", "3", cwd=tmp_path)  # resumes
        assert again.returncode == 0, again.stderr
        progress = pd.read_csv(out / "progress.csv")
        assert list(progress["iteration"]) == [0, 1, 2]
        if method == "trpo-single-path":
            assert list(progress["env_steps"]) == [800, 1600, 2400]  # the plug-in's defaults
    vine = _run(env_site, "train", "--env", COUNTER, "--method", "trpo-vine", "--out",
                str(tmp_path / "v"), *sets, cwd=tmp_path)  # fmt: skip
    assert vine.returncode == 2
    lines = [x for x in vine.stderr.strip().splitlines() if "'Broken-v0'" not in x]
    assert len(lines) == 1 and "define snapshot_state() -> state and restore_state" in lines[0]
    assert not (tmp_path / "v").exists()  # refused before any work
    single = _run(env_site, "train", "--env", COUNTER, "--out", str(tmp_path / "c"),
                  "--iterations", "1", "--steps-per-iter", "200", *sets, cwd=tmp_path)  # fmt: skip
    assert single.returncode == 0, single.stderr


def test_a_grid_over_new_envs_plans_runs_and_reaches_tables_claims_and_mlflow(env_site, tmp_path):
    overlay = {
        "results": "results/byo",
        "experiment": "trpo-bench-byo",
        "envs": [SLIDER, COUNTER],
        "methods": ["trpo-single-path", "cem"],
        "seeds": [0],
        "sweeps": [],
        "exclude": [],
        "overrides": [{"set": {"iterations": 2, "steps_per_iter": 400, "num_envs": 2}}],
        "claims": [
            {
                "id": "byo",
                "statement": "single path beats CEM on the tiny cart-pole",
                "envs": [SLIDER],
                "better": "trpo-single-path",
                "worse": "cem",
                "metric": "final_eval_return",
            }
        ],
    }
    grid = tmp_path / "byo.yaml"
    grid.write_text(yaml.safe_dump(overlay))
    work = tmp_path / "work"
    args = ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "2"]
    args += ["--configfile", "config/smoke.yaml", str(grid)]
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *args],
        cwd=ROOT, env=_env(env_site), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "trpo-bench: 4 training jobs" in dry.stderr
    assert f"no measured rate for {SLIDER}, {COUNTER}" in dry.stderr
    real = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=ROOT, env=_env(env_site), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert real.returncode == 0, real.stderr[-3000:]
    results = work / "results" / "byo"
    comparison = pd.read_csv(results / "tables" / "comparison.csv")
    assert set(comparison["env"]) == {SLIDER, COUNTER}
    # The plug-in's published number sits beside ours (config/reference.yaml knows nothing).
    published = comparison[
        (comparison["env"] == SLIDER) & (comparison["method"] == "trpo-single-path")
    ]
    assert "123.5" in published.to_csv()
    claims = pd.read_csv(results / "tables" / "claims.csv")
    assert list(claims["claim"].astype(str)) == ["byo"]
    assert claims["comparisons"].tolist() == [1]  # the claim named the new env: compared there
    info = json.loads((results / "mlflow_summary.json").read_text())
    assert info.get("run_id")


def test_the_docs_page_names_what_it_documents():
    page = (ROOT / "docs" / "envs.md").read_text()
    for needle in (ENV_PLUGIN_GROUP, "snapshot_state", "restore_state", "trpo-bench envs"):
        assert needle in page


def test_plugin_references_merge_under_the_file():
    from trpo_bench.analysis.references import with_plugin_references
    from trpo_bench.envs.registry import EnvSpec

    spec = EnvSpec(
        "Mine-v0",
        "other",
        "",
        reference={
            "sources": {"mine": "my paper", "tianshou": "a clash"},
            "entries": [{"method": "cem", "source": "mine", "metric": "final_return", "value": 7}],
            "normalization": {"random": -1.0, "best": 9.0},
        },
    )
    file = {"sources": {"tianshou": "Tianshou README"}, "normalization": {"Hopper-v5": {}}}
    merged = with_plugin_references(file, [spec])
    assert merged["sources"] == {"mine": "my paper", "tianshou": "Tianshou README"}
    assert merged["entries"] == [
        {"env": "Mine-v0", "method": "cem", "source": "mine", "metric": "final_return", "value": 7}
    ]
    assert merged["normalization"] == {"Hopper-v5": {}, "Mine-v0": {"random": -1.0, "best": 9.0}}
    assert file["sources"] == {"tianshou": "Tianshou README"}  # the file's data untouched
