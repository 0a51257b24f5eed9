"""Config resolution and the clear errors for bad input."""

import pytest

from trpo_bench.cli import main
from trpo_bench.config import ConfigError, parse_overrides
from trpo_bench.resolve import build_config


def test_layers_resolve_in_order():
    cfg = build_config(
        "Hopper-v5",
        "trpo-single-path",
        layers=[("file", {"delta": 0.02, "gamma": 0.9}), ("--set", {"delta": 0.05})],
    )
    assert cfg.delta == 0.05 and cfg.gamma == 0.9
    assert cfg.hidden_sizes == [50]  # the paper's hopper network, from the env preset


def test_paper_preset_uses_table_2_budget():
    cfg = build_config("Hopper-v5", "trpo-single-path", preset="paper")
    assert (cfg.iterations, cfg.steps_per_iter) == (200, 1_000_000)
    cfg = build_config("Swimmer-v5", "trpo-single-path", preset="paper")
    assert (cfg.iterations, cfg.steps_per_iter, cfg.hidden_sizes) == (200, 50_000, [30])


def test_overrides_parse_yaml_values():
    assert parse_overrides(["hidden_sizes=[8, 8]", "mlflow=false", "steps_per_iter=1e4"]) == {
        "hidden_sizes": [8, 8],
        "mlflow": False,
        "steps_per_iter": "1e4",
    }
    cfg = build_config(
        "CartPole-v1", "trpo-single-path", layers=[("--set", {"steps_per_iter": "1e4"})]
    )
    assert cfg.steps_per_iter == 10_000


@pytest.mark.parametrize(
    ("layer", "needle"),
    [
        ({"delta": 0}, "'delta': 0 is out of range (allowed: > 0.0)"),
        ({"delta": -1.0}, "'delta'"),
        ({"iterations": 0}, "'iterations': 0 is out of range (allowed: >= 1)"),
        ({"steps_per_iter": -5}, "'steps_per_iter'"),
        ({"seed": -1}, "'seed': -1 is out of range"),
        ({"gamma": 1.5}, "'gamma': 1.5 is out of range (allowed: <= 1.0)"),
        ({"baseline": "magic"}, "allowed: none, value"),
        ({"iterations": "ten"}, "'iterations': 'ten' is not an integer"),
        ({"hidden_sizes": 64}, "is not a list of integers"),
        ({"deltaa": 0.1}, "unknown config key 'deltaa' in test; did you mean 'delta'?"),
    ],
)
def test_bad_values_name_the_value_and_what_is_allowed(layer, needle):
    with pytest.raises(ConfigError) as e:
        build_config("CartPole-v1", "trpo-single-path", layers=[("test", layer)])
    assert needle in str(e.value)


def test_unknown_env_and_method_list_the_allowed_ones():
    # Not a preset, and gymnasium cannot make it either: both said, with the known ids.
    with pytest.raises(ConfigError, match=r"unknown env 'Hoper-v5': gymnasium cannot .*Hopper-v5"):
        build_config("Hoper-v5", "trpo-single-path")
    with pytest.raises(ConfigError, match=r"unknown method 'trpo' \(allowed: trpo-single-path"):
        build_config("Hopper-v5", "trpo")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--env", "Nope-v0"], "unknown env 'Nope-v0'"),
        (["--env", "CartPole-v1", "--method", "sarsa"], "unknown method 'sarsa'"),
        (["--env", "CartPole-v1", "--iterations", "0"], "'iterations': 0 is out of range"),
        (["--env", "CartPole-v1", "--steps-per-iter", "-10"], "'steps_per_iter': -10"),
        (["--env", "CartPole-v1", "--set", "delta"], "malformed --set 'delta'"),
        (["--env", "CartPole-v1", "--set", "delta=0"], "'delta': 0"),
        (["--env", "CartPole-v1", "--config", "missing.yaml"], "does not exist"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(args, needle, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert not out.exists()  # nothing started, nothing written


def test_cli_malformed_yaml_and_unwritable_out(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("delta: [0.1\n")
    assert (
        main(["train", "--env", "CartPole-v1", "--config", str(bad), "--out", str(tmp_path / "r")])
        == 2
    )
    assert "is not valid YAML" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--env", "CartPole-v1", "--out", str(blocker / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_methods_and_envs_listings(capsys):
    assert main(["methods"]) == 0
    assert "trpo-single-path" in capsys.readouterr().out
    assert main(["envs"]) == 0
    listing = capsys.readouterr().out
    for env in ("InvertedPendulum-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5", "CartPole-v1"):
        assert env in listing
