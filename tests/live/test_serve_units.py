"""Pieces of the step-routing server on their own: the price controller, policy specs, error locations."""

from __future__ import annotations

import math
import random

import pytest

from trim_rl.live.serve.app import field_path
from trim_rl.live.serve.control import PriceController
from trim_rl.live.serve.policies import load_served, parse_spec

from tests.live.conftest import REPO


def simulated_share(lam: float, rng: random.Random) -> tuple[int, int]:
    """A request of 4 steps of 40 tokens whose steps go to the strong model with a probability that
    falls with log(price), as a budget-conditioned policy's do."""
    p = min(1.0, max(0.0, 0.45 - 0.05 * (math.log(lam) - math.log(2e-3))))
    strong = sum(rng.random() < p for _ in range(4))
    return 40 * strong, 160


@pytest.mark.parametrize("target", [0.15, 0.3, 0.6])
def test_the_controller_settles_the_share_near_its_target(target):
    rng = random.Random(0)
    c = PriceController(target, 2e-3, 1e-7, 1.0, window=32, rate=0.1)
    done = []
    for _ in range(600):
        s, n = simulated_share(c.price, rng)
        c.observe(s, n)
        done.append((s, n))
    late = done[300:]
    share = sum(s for s, _ in late) / sum(n for _, n in late)
    assert share == pytest.approx(target, abs=0.03)
    assert c.updates == 600


def test_the_controller_stays_within_its_bounds():
    c = PriceController(0.1, 1e-3, 1e-4, 1e-2, window=4, rate=1.0)
    for _ in range(50):
        c.observe(100, 100)  # all strong: the price climbs to its ceiling
    assert c.price == pytest.approx(1e-2)
    for _ in range(50):
        c.observe(0, 100)
    assert c.price == pytest.approx(1e-4) and c.share == 0.0
    with pytest.raises(ValueError, match="--target-strong-share"):
        PriceController(1.0, 1e-3, 1e-4, 1e-2)


def test_policy_specs_name_their_model_ids():
    assert parse_spec("thr:0.5") == ("thr:0.5", "thr:0.5")
    assert parse_spec("fast=thr:0.5") == ("fast", "thr:0.5")
    ckpt = str(REPO / "checkpoints" / "trim_agg" / "trim_agg_b20")
    assert parse_spec(ckpt) == ("trim_agg_b20", ckpt)
    served, default = load_served(["strong-only", f"agg={ckpt}", f"b={REPO / 'checkpoints' / 'trim_agg_budget'}"],
                                  default="agg", lam=2e-3)
    assert default == "agg" and list(served) == ["strong-only", "agg", "b"]
    assert served["strong-only"].mode == "strong-only" and served["strong-only"].router is None
    assert not served["agg"].budget_conditioned and served["b"].budget_conditioned and served["b"].lam == 2e-3


def test_both_spellings_of_a_fixed_mode_serve_it_under_the_name_given():
    served, default = load_served(["always-weak", "weak-only", "strong=always-strong", "thr:0.5"])
    assert default == "always-weak" and list(served) == ["always-weak", "weak-only", "strong", "thr:0.5"]
    for name, mode in (("always-weak", "weak-only"), ("weak-only", "weak-only"), ("strong", "strong-only")):
        assert served[name].mode == mode and served[name].router is None  # no router: no scorer call
    assert served["thr:0.5"].mode == "hybrid" and served["thr:0.5"].router.policy.k == 0.5


def test_an_unknown_policy_is_refused_with_the_valid_names(tmp_path):
    with pytest.raises(ValueError, match=r"--policy nope: unknown policy 'nope'; valid: thr:K, always-weak \(weak-only\)"):
        load_served(["nope"])


def test_error_locations_read_as_request_fields():
    assert field_path(("body", "trim", "budget")) == "trim.budget"
    assert field_path(("body", "messages", 0, "content", "str")) == "messages[0].content"
    assert field_path(("body", "messages", 1, "content", "list[TextPart]", 0, "text")) == "messages[1].content[0].text"
