"""Derivative-free baselines (CEM, CMA-ES) and RWR: evaluation, budget, files, learning."""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.utils import vector_to_parameters

from trpo_bench.cli import main, script_main
from trpo_bench.config import ConfigError
from trpo_bench.core.policies import make_policy
from trpo_bench.envs.registry import EnvVector, make_env
from trpo_bench.methods import search
from trpo_bench.methods.cem import elite_count
from trpo_bench.methods.rwr import rwr_weights
from trpo_bench.methods.search import CandidateEvaluator, SearchProblem, policy_head, search_budget
from trpo_bench.resolve import build_config
from trpo_bench.run.learner import load_policy
from trpo_bench.run.trainer import train

ROOT = Path(__file__).resolve().parent.parent
TIMING = ["wall_time_s", "eval_time_s", "update_time_s", "eval_protocol_time_s"]
IP = "InvertedPendulum-v5"


def _cfg(method, env=IP, **over):
    return build_config(
        env, method, layers=[("test", {"mlflow": False, "checkpoint_every": 0, **over})]
    )


def _run(tmp_path, name, method, env=IP, **over):
    out = tmp_path / name
    summary = train(_cfg(method, env, **over), out, log=lambda _m: None)
    return out, summary


def _progress(out):
    return pd.read_csv(out / "progress.csv").drop(columns=TIMING)


def _reference_episode(policy, env_id, vector, seed, horizon):
    """One episode with the plain policy (no batching): return and length."""
    vector_to_parameters(
        torch.as_tensor(vector, dtype=torch.float32), policy_head(policy).parameters()
    )
    env = make_env(env_id)
    obs, _ = env.reset(seed=seed)
    total, length = 0.0, 0
    with torch.no_grad():
        while True:
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32))[None]
            action = policy.mode(policy.dist_params(x))[0].numpy()
            if not policy.discrete:
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            length += 1
            if terminated or truncated or length >= horizon:
                env.close()
                return total, length


@pytest.mark.parametrize(
    ("env_id", "hidden", "horizon"), [(IP, [], 1000), (IP, [], 40), ("CartPole-v1", [8], 500)]
)
def test_evaluator_matches_plain_rollouts(env_id, hidden, horizon):
    # 7 vectors x 2 episodes on 3 envs: envs run job after job; every episode must be the one
    # the plain policy plays from the same seed, cut at the same horizon.
    envs = EnvVector(env_id, 3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        policy = make_policy(envs.observation_space, envs.action_space, hidden)
    evaluator = CandidateEvaluator(envs, policy)
    vectors = torch.randn(7, evaluator.dim, generator=torch.Generator().manual_seed(1)) * 0.5
    seeds = [11, 12]
    result = evaluator.evaluate(vectors, seeds, horizon)
    envs.close()
    assert result.returns.shape == result.lengths.shape == (7, 2)
    for k in range(7):
        for e, seed in enumerate(seeds):
            ret, length = _reference_episode(policy, env_id, vectors[k], seed, horizon)
            assert result.lengths[k, e] == length, (k, e)
            assert result.returns[k, e] == pytest.approx(ret, rel=1e-9), (k, e)
    assert result.env_steps == result.lengths.sum()
    assert result.lengths.max() <= horizon
    assert len(set(result.lengths.ravel().tolist())) > 1  # the vectors really differ


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Swimmer-v5"])
def test_candidates_score_the_same_through_the_mujoco_stepper_as_through_gymnasium(env_id):
    # The stepper takes the candidates' float32 actions as gymnasium does (its control cost in
    # float32): every return must be equal to the last bit, every episode as long. Hopper's
    # episodes end by falling (terminations), the horizon cuts the others.
    results = []
    for vector_env in (True, False):
        envs = EnvVector(env_id, 3, {"mujoco_vector": vector_env})
        assert (envs.mujoco_stepper is not None) == vector_env
        with torch.random.fork_rng():
            torch.manual_seed(0)
            policy = make_policy(envs.observation_space, envs.action_space, [8])
        evaluator = CandidateEvaluator(envs, policy)
        vectors = torch.randn(5, evaluator.dim, generator=torch.Generator().manual_seed(2))
        results.append(evaluator.evaluate(vectors, [3, 4], horizon=120))
        envs.close()
    fast, slow = results
    np.testing.assert_array_equal(fast.lengths, slow.lengths)
    np.testing.assert_array_equal(fast.returns, slow.returns)
    assert len(set(fast.lengths.ravel().tolist())) > 1 or env_id == "Swimmer-v5"


def test_batched_actions_match_the_policy_and_the_vmap_fallback():
    envs = EnvVector("Hopper-v5", 5)
    policy = make_policy(envs.observation_space, envs.action_space, [16, 16])
    evaluator = CandidateEvaluator(envs, policy)
    vectors = torch.randn(5, evaluator.dim, generator=torch.Generator().manual_seed(0)) * 0.3
    evaluator.slot_params.copy_(vectors)
    evaluator.obs[:] = np.random.default_rng(0).standard_normal(evaluator.obs.shape)
    batched = evaluator.actions()
    expected = []
    for k in range(5):
        vector_to_parameters(vectors[k], policy_head(policy).parameters())
        with torch.no_grad():
            mean = policy.mode(policy.dist_params(torch.from_numpy(evaluator.obs[k : k + 1])))
        expected.append(np.clip(mean[0].numpy(), -1.0, 1.0))
    np.testing.assert_allclose(batched, np.stack(expected), atol=1e-6)
    evaluator._layers = None  # any other network: vmap over functional_call
    np.testing.assert_allclose(evaluator.actions(), batched, atol=1e-6)
    envs.close()


def test_budget_population_and_horizon():
    # Derived: as many candidates as full episodes fit, minus the mean's.
    b = search_budget(_cfg("cem", steps_per_iter=10_000))
    assert (b.population, b.horizon, b.env_limit) == (9, 1000, 1000)
    assert b.max_steps == 10_000
    assert search_budget(_cfg("cem", env="Hopper-v5")).population == 24  # 25000 / 1000 - 1
    assert search_budget(_cfg("cma-es", steps_per_iter=1000)).population == search.MIN_POPULATION
    # Explicit population too large for the budget: episodes are cut to fit steps_per_iter.
    b = search_budget(
        _cfg("cem", population_size=20, steps_per_iter=5000, episodes_per_candidate=2)
    )
    assert b.horizon == 5000 // (2 * 21) and b.max_steps <= 5000
    assert elite_count(9, 0.2) == 2 and elite_count(50, 0.2) == 10 and elite_count(2, 0.01) == 2


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"population_size": 1}, ["population_size", "1", ">= 2"]),
        ({"population_size": 50, "steps_per_iter": 40}, ["steps_per_iter", "40", "51"]),
        ({"elite_fraction": 0.0}, ["elite_fraction"]),
        ({"cma_sigma0": -1}, ["cma_sigma0"]),
    ],
)
def test_bad_config_is_refused_before_any_work(over, words, tmp_path):
    with pytest.raises(ConfigError) as e:
        _cfg("cma-es" if "cma_sigma0" in over else "cem", **over)
    for w in words:
        assert w in str(e.value)
    args = [f"--set={k}={v}" for k, v in over.items()]
    assert main(["train", "--env", IP, "--method", "cem", "--out", str(tmp_path / "r"), *args]) == 2
    assert not (tmp_path / "r" / "summary.json").exists()


def test_env_steps_count_every_episode_and_follow_the_budget(tmp_path, monkeypatch):
    calls = []
    original = CandidateEvaluator.evaluate

    def spy(self, vectors, seeds, horizon):
        result = original(self, vectors, seeds, horizon)
        calls.append(result.lengths.copy())
        return result

    monkeypatch.setattr(CandidateEvaluator, "evaluate", spy)
    spi = 3000
    out, summary = _run(tmp_path, "r", "cem", iterations=3, steps_per_iter=spi, num_envs=4)
    progress = pd.read_csv(out / "progress.csv")
    # Each generation is one evaluate call; each row covers `generations` of them.
    assert progress["generations"].sum() == len(calls)
    bounds = np.cumsum([0, *progress["generations"]])
    per_iteration = [sum(int(c.sum()) for c in calls[a:b]) for a, b in itertools.pairwise(bounds)]
    assert list(np.diff([0, *progress["env_steps"]])) == per_iteration
    assert summary["env_steps"] == sum(int(c.sum()) for c in calls)
    assert all(c.shape == (search.MIN_POPULATION + 1, 1) for c in calls)  # mean + candidates
    # The gradient methods' budget, iteration by iteration, to within one generation.
    for i, steps in enumerate(progress["env_steps"]):
        assert (i + 1) * spi <= steps < (i + 1) * spi + max(int(c.sum()) for c in calls)
    # The rows describe the last generation of each iteration.
    last = calls[bounds[1] - 1]
    assert progress.loc[0, "episode_length_mean"] == last[0, 0]
    assert progress.loc[0, "candidate_episode_length_mean"] == pytest.approx(last[1:].mean())


@pytest.mark.parametrize("method", ["cem", "cma-es"])
def test_same_seed_same_progress_and_result_files(tmp_path, method):
    kw = dict(iterations=3, steps_per_iter=2000, num_envs=3, seed=5)
    a, summary = _run(tmp_path, "a", method, **kw)
    b, _ = _run(tmp_path, "b", method, **kw)
    c, _ = _run(tmp_path, "c", method, **{**kw, "seed": 6})
    pa, pb, pc = _progress(a), _progress(b), _progress(c)
    pd.testing.assert_frame_equal(pa, pb)
    assert not pa["population_return_mean"].equals(pc["population_return_mean"])
    for col in [
        "iteration",
        "env_steps",
        "return_mean",
        "best_candidate_return",
        "population_return_mean",
        "population_size",
        "generations",
        "return_change",
    ]:
        assert col in pa.columns, col
    assert (pa["best_candidate_return"] >= pa["population_return_mean"]).all()
    assert (
        summary["status"] == "completed" and summary["final_return"] == pa["return_mean"].iloc[-1]
    )
    policy = load_policy(a / "policy.pt")
    assert policy.log_std.detach().eq(0.0).all()  # not searched: deterministic actions
    assert (a / "policy.pt").read_bytes() == (b / "policy.pt").read_bytes()


@pytest.mark.parametrize("method", ["cem", "cma-es"])
def test_resume_after_failure_matches_an_uninterrupted_run(tmp_path, method, crash_at):
    kw = dict(iterations=4, steps_per_iter=2000, num_envs=3, seed=3, checkpoint_every=2)
    whole, _ = _run(tmp_path, "whole", method, **kw)

    disarm = crash_at(3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(tmp_path, "resumed", method, **kw)
    assert len(pd.read_csv(tmp_path / "resumed" / "progress.csv")) == 3
    disarm()
    lines = []
    resumed = tmp_path / "resumed"
    train(_cfg(method, **kw), resumed, log=lines.append)
    assert any("resuming" in line and "iteration 2" in line for line in lines), lines
    pd.testing.assert_frame_equal(_progress(whole), _progress(resumed))
    assert (whole / "policy.pt").read_bytes() == (resumed / "policy.pt").read_bytes()


def test_observation_normaliser_learns_from_the_candidates(tmp_path):
    out, _ = _run(
        tmp_path, "r", "cma-es", iterations=1, steps_per_iter=1000, normalize_observations=True
    )
    policy = load_policy(out / "policy.pt")
    env_steps = int(pd.read_csv(out / "progress.csv")["env_steps"].iloc[-1])
    assert policy.obs_norm.count.item() == pytest.approx(env_steps, abs=1e-3)


def test_script_equals_method(tmp_path):
    args = ["--env", IP, "--seed", "4", "--iterations", "2", "--steps-per-iter", "1500"]
    args += ["--set", "mlflow=false", "--set", "num_envs=5", "--quiet"]
    script = subprocess.run(
        [sys.executable, str(ROOT / "baselines" / "cem.py"), *args, "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    assert main(["train", "--method", "cem", *args, "--out", str(tmp_path / "m")]) == 0
    pd.testing.assert_frame_equal(_progress(tmp_path / "s"), _progress(tmp_path / "m"))
    assert script_main("cem", ["--method", "cma-es", "--env", IP, "--out", "x"]) == 2


def test_problem_artifact_is_the_final_mean():
    problem = SearchProblem(_cfg("cem"))
    vector = np.arange(problem.evaluator.dim, dtype=np.float64) / 10
    artifact = problem.artifact(vector)
    problem.close()
    weights = artifact["state_dict"]["mean_net.0.weight"]
    np.testing.assert_allclose(weights.numpy().ravel(), vector[:4], rtol=1e-6)


def test_rwr_weights_exponentiate_returns():
    q = torch.tensor([0.0, 1.0, 2.0])
    w = rwr_weights(q, 0.5)
    assert float(w.sum()) == pytest.approx(1.0)
    assert float(w[2] / w[1]) == pytest.approx(np.exp(2.0))
    assert torch.isfinite(rwr_weights(torch.tensor([1e4, 0.0]), 1.0)).all()  # no overflow


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cem", "cma-es"])
def test_learns_inverted_pendulum(tmp_path, method):
    # The paper's cart-pole with a linear policy: 9 candidates per generation, 60k steps.
    _, summary = _run(
        tmp_path, "ip", method, iterations=6, steps_per_iter=10_000, num_envs=10, seed=2
    )
    assert summary["best_return"] >= 900, summary
    assert summary["final_return"] >= 900, summary


@pytest.mark.slow
def test_rwr_improves_inverted_pendulum(tmp_path):
    out, _ = _run(tmp_path, "ip", "rwr", iterations=8, steps_per_iter=5000, seed=0)
    returns = pd.read_csv(out / "progress.csv")["return_mean"]
    assert returns.iloc[-2:].mean() >= 200, list(returns)
    assert returns.iloc[-2:].mean() >= 5 * returns.iloc[0], list(returns)
