"""The step-routing server (``python -m trim_rl.live serve``, a subprocess) in front of the real llama.cpp
server with SmolLM2-135M, driven by OpenAI's own Python client."""

from __future__ import annotations

import json
import shutil

import openai
import pytest
from _serve import ServeProcess

from tests.live.conftest import REPO
from trim_rl.agents.exported import ExportedPolicy
from trim_rl.agents.registry import load_checkpoint
from trim_rl.envs.observations import StepHistory
from trim_rl.live.prm import UNSCORED

AGG = REPO / "checkpoints" / "trim_agg" / "trim_agg_b20"
BUDGET = REPO / "checkpoints" / "trim_agg_budget"
PROBLEM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")
FAST = ["--max-tokens", "16", "--max-steps", "3", "--weak-temperature", "0.7", "--timeout", "60", "--retries", "1"]


@pytest.fixture(scope="module")
def budget_table_checkpoint(tmp_path_factory):
    """The budget-conditioned checkpoint with a budget table (budget % -> price) in its policy.json."""
    folder = tmp_path_factory.mktemp("ckpt") / "trim_agg_budget_table"
    shutil.copytree(BUDGET, folder)
    meta = json.loads((folder / "policy.json").read_text())
    meta["budget_table"] = {"trees": "test", "rows": [{"lam": 4e-4, "cost_pct": 60.0, "accuracy": 0.7},
                                                     {"lam": 4.8e-3, "cost_pct": 10.0, "accuracy": 0.5}]}
    (folder / "policy.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def server(llama_url, tmp_path_factory, budget_table_checkpoint):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = ServeProcess(["serve", "--weak-url", llama_url, "--strong-url", llama_url, "--prm", "self-verify",
                         "--policy", f"agg={AGG}", "--policy", "thr1=thr:1.0", "--policy", f"budget={BUDGET}",
                         "--policy", f"table={budget_table_checkpoint}", "--lam", "1e-3", "--port", "0",
                         "--log-level", "warning", *FAST], log)
    yield proc
    assert proc.stop() == 0, log.read_text()


def chat(server, model, problem=PROBLEM, **trim):
    return server.client().chat.completions.create(model=model, messages=[{"role": "user", "content": problem}],
                                                   seed=7, extra_body={"trim": {"return_steps": True, **trim}})


def steps_of(choice) -> list[dict]:
    return choice.model_extra["trim"]["steps"]


def check_usage(r) -> list[dict]:
    steps = steps_of(r.choices[0])
    u = r.usage
    assert u.steps == len(steps) >= 1
    assert u.strong_tokens == sum(s["tokens"] for s in steps if s["by"] == "strong")
    assert u.discarded_tokens == sum(s["draft"]["tokens"] for s in steps if "draft" in s)
    assert u.weak_tokens == sum(s["tokens"] for s in steps if s["by"] == "weak") + u.discarded_tokens
    assert u.completion_tokens == sum(s["tokens"] for s in steps) and u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.interventions == sum(s["by"] == "strong" for s in steps)
    # each step's draft was scored, and each strong step that did not end the solution
    assert u.prm_calls == len(steps) + sum(s["by"] == "strong" for s in steps[:-1])
    return steps


def test_models_and_a_routed_chat_completion_whose_decisions_replay_through_the_checkpoint(server):
    assert [m.id for m in server.client().models.list()] == ["agg", "thr1", "budget", "table"]
    r = chat(server, "agg")
    assert r.model == "agg" and r.object == "chat.completion" and r.usage.prompt_tokens > 0
    steps = check_usage(r)
    assert r.choices[0].message.content == "\n\n".join(s["text"] for s in steps if s["text"])
    assert r.choices[0].finish_reason in ("stop", "length")
    policy = load_checkpoint(AGG)
    builder = policy.builder()
    hist = StepHistory()
    for s in steps:
        draft = s.get("draft", s)
        obs = builder.from_history(hist, score(draft), draft["tokens"])
        assert int(policy.predict(obs[None])[0][0]) == int(s["by"] == "strong")
        if s is not steps[-1]:
            hist.append(score(s), s["tokens"], s["by"] == "strong")


def score(step: dict) -> float:
    return UNSCORED if step["score"] is None else step["score"]


def test_a_stream_sends_each_step_as_it_is_accepted_and_the_usage_last(server):
    chunks = list(server.client().chat.completions.create(
        model="agg", messages=[{"role": "user", "content": PROBLEM}], seed=7, stream=True,
        stream_options={"include_usage": True}, extra_body={"trim": {"return_steps": True}}))
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    (last,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    steps = steps_of(last.choices[0])
    assert len(texts) == len([s for s in steps if s["text"]])
    assert "".join(texts) == "\n\n".join(s["text"] for s in steps if s["text"])
    assert chunks[-1].choices == [] and chunks[-1].usage.steps == len(steps)


def test_completions(server):
    r = server.client().completions.create(model="agg", prompt=PROBLEM, max_tokens=20, seed=3)
    assert r.object == "text_completion" and r.choices[0].text
    # max_tokens: the solution stops after the step that reaches 20 tokens
    assert r.usage.completion_tokens >= 20 or r.choices[0].finish_reason == "stop"
    assert r.usage.steps <= 2


def test_thr_1_regenerates_every_step_and_max_strong_tokens_stops_it(server):
    steps = check_usage(chat(server, "thr1"))
    assert all(s["by"] == "strong" and s["decision"] == "regenerate" for s in steps)
    r = chat(server, "thr1", max_strong_tokens=1)
    steps = check_usage(r)
    assert steps[0]["by"] == "strong" and r.usage.strong_tokens == steps[0]["tokens"]
    assert all(s["by"] == "weak" and s["blocked"] == "max_strong_tokens" for s in steps[1:])


def test_the_price_moves_the_strong_spend_the_way_asked(server):
    free = chat(server, "budget", lam=1.0)  # a strong token costs a correct answer: nothing is regenerated
    assert free.usage.strong_tokens == 0 and free.choices[0].model_extra["trim"]["lam"] == 1.0
    default = chat(server, "budget")
    assert default.choices[0].model_extra["trim"]["lam"] == 1e-3  # --lam
    assert default.usage.strong_tokens >= free.usage.strong_tokens


@pytest.mark.skipif(not hasattr(ExportedPolicy, "lam_for_budget"), reason="this trim_rl has no budget tables")
def test_a_budget_becomes_the_checkpoint_s_price(server, budget_table_checkpoint):
    policy = load_checkpoint(budget_table_checkpoint)
    low, high = chat(server, "table", budget=10), chat(server, "table", budget=60)
    lams = [r.choices[0].model_extra["trim"]["lam"] for r in (low, high)]
    assert lams == pytest.approx([policy.lam_for_budget(10), policy.lam_for_budget(60)])
    assert lams[0] > lams[1] and low.usage.strong_tokens <= high.usage.strong_tokens
    with pytest.raises(openai.BadRequestError) as e:
        chat(server, "table", budget=90)  # past the table
    assert e.value.body["param"] == "trim.budget"


@pytest.mark.parametrize("trim,param", [({"budget": 150}, "trim.budget"), ({"lam": -1}, "trim.lam"),
                                        ({"policy": "nope"}, "trim.policy"), ({"lam": 1e-3, "policy": "agg"}, "trim.lam"),
                                        ({"max_strong_tokens": "many"}, "trim.max_strong_tokens")])
def test_bad_fields_are_400_naming_the_field(server, trim, param):
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(model="agg", messages=[{"role": "user", "content": PROBLEM}],
                                                extra_body={"trim": trim})
    assert e.value.status_code == 400 and e.value.body["param"] == param
    assert e.value.body["message"].startswith(param)
