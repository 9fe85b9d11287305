"""How often a run logs reaches it outside its params (spectral_reach.cadence), by its output folder."""

import json

from spectral_reach.cadence import DEFAULT_LOG_EVERY, ENV, cadence_env, log_every, tracking


def test_each_run_finds_its_own_cadence_by_its_folder():
    config = {"lm": {"stories": {"log_every": 7}, "stories2": {}}, "vit": {"log_every": 3}}
    env = {ENV: cadence_env(config)}
    assert json.loads(env[ENV])["log_every"]["results/probe/stories/"] == 7
    assert log_every("results/lm/stories/s/seed0", env) == 7
    assert log_every("results/probe/stories/s/seed0/random", env) == 7
    assert log_every("/cluster/runs/demo/results/lm/stories/m/seed1/", env) == 7  # an absolute folder
    assert log_every("results/lm/stories2/s/seed0", env) == DEFAULT_LOG_EVERY  # the schema's default
    assert log_every("results/vit/mup/s/seed0", env) == 3
    assert log_every("elsewhere/run", env) == DEFAULT_LOG_EVERY  # started by hand
    assert log_every("results/lm/stories/s/seed0", {}) == DEFAULT_LOG_EVERY
    assert json.loads(cadence_env({"lm": {}, "vit": None})) == {"log_every": {}, "tracking": {}}


def test_tracking_reaches_every_run_grouped_by_the_study():
    config = {"lm": {}, "run_name": "demo", "tracking": {"wandb": {"project": "p", "mode": "offline"}}}
    env = {ENV: cadence_env(config)}
    assert tracking(env) == {"wandb": {"project": "p", "mode": "offline"}, "group": "demo"}
    assert tracking({ENV: cadence_env({"lm": {}})}) == {} and tracking({}) == {}  # off, or started by hand
