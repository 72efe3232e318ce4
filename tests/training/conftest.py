import pytest
import yaml

from trim_rl.sim.generate import generate_file


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory):
    """Small real tree files and an env YAML pointing at them."""
    d = tmp_path_factory.mktemp("tiny_env")
    paths = {}
    for split, limit in (("train", 12), ("val", 6), ("test", 8)):
        paths[split] = str(d / f"{split}.jsonl.gz")
        generate_file("math500", split, 0, paths[split], limit=limit, draws=2)
    env = {"name": "tiny", **paths, "budget": 10.0, "budget_grid": [5.0, 20.0], "lam": 1.0e-3,
           "lam_grid": [5.0e-4, 2.0e-3]}
    path = d / "tiny.yaml"
    path.write_text(yaml.safe_dump(env))
    return path


@pytest.fixture
def tiny_args():
    """--hyperparams for a training run of a few seconds."""
    return TINY


TINY = ["total_timesteps:1024", "eval_freq:512", "n_envs:8", "n_steps:32", "batch_size:128", "n_epochs:2",
        "policy_iteration.rounds:2", "policy_iteration.samples:3000"]
