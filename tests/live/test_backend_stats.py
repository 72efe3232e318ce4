"""The backend's own counters and its batching ceiling, against a real llama-server."""

from __future__ import annotations

import pytest

from trim_rl.live.backend_stats import (backend_profile, batching_ceiling, ceiling_line, flush_prompt_caches, llama_slots,
                                        scrape_text)


def test_a_metrics_page_is_read_by_sample():
    page = "# HELP x\n# TYPE x counter\nllamacpp:n_decode_total 12\ntrim_price{policy=\"b\"} 0.5\n"
    assert scrape_text(page) == {"llamacpp:n_decode_total": 12.0, 'trim_price{policy="b"}': 0.5}


def test_a_profile_is_the_difference_of_two_readings():
    before = {"n_decode_total": 10.0, "busy_slots_total": 10.0, "prompt_tokens_total": 100.0}
    after = {"n_decode_total": 14.0, "busy_slots_total": 22.0, "prompt_tokens_total": 160.0, "tokens_predicted_total": 12.0}
    p = backend_profile(after, before)
    assert p["decode_calls"] == 4 and p["busy_slots_per_call"] == 3.0 and p["prompt_tokens"] == 60
    assert backend_profile(None, before) is None


@pytest.mark.slow
def test_the_ceiling_sends_the_same_work_both_ways_and_batches_it_all_at_once(new_server):
    server = new_server(parallel=3, n_ctx=1024)
    prompts = ["Natalia sold clips to 48 of her friends.", "What is 7 times 6?", "Name a prime above 10."]
    c = batching_ceiling(server.url, prompts, 6)
    for key in ("all_at_once", "one_at_a_time"):
        run = c[key]
        # the end of text is ignored: every completion writes its 6 tokens, as the server itself counts
        assert run["tokens"] == 18 and run["backend"]["generated_tokens"] == 18, (key, run)
        assert run["tokens_per_s"] > 0
    # no prompt is taken from a slot's cache, so both runs prefill the same tokens
    assert c["all_at_once"]["backend"]["prompt_tokens"] == c["one_at_a_time"]["backend"]["prompt_tokens"] > 0
    # sent one by one, a decode call holds one sequence; all at once, several
    assert c["one_at_a_time"]["backend"]["busy_slots_per_call"] == pytest.approx(1.0, abs=1e-3)  # a rounded mean
    assert c["all_at_once"]["backend"]["busy_slots_per_call"] > 1.5
    assert c["ratio"] == pytest.approx(c["all_at_once"]["tokens_per_s"] / c["one_at_a_time"]["tokens_per_s"])
    line = ceiling_line(c, 3, 6)
    assert f"ratio all at once / one at a time: {c['ratio']:.2f}" in line and "busy slots" in line


@pytest.mark.slow
def test_a_flush_empties_every_slot_s_prompt_cache(new_server):
    import httpx

    server = new_server(parallel=2, n_ctx=1024)

    def computed(prompt: str) -> int:
        r = httpx.post(server.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 1}, timeout=120)
        return r.json()["timings"]["prompt_n"]  # prompt tokens not taken from the slot's cache

    prompts = ["Natalia sold clips to 48 of her friends in April.", "Weng earns $12 an hour for babysitting."]
    full = [computed(p) for p in prompts]
    assert [computed(p) for p in prompts] != full  # cached: the second time computes (almost) nothing
    assert flush_prompt_caches(server.url) is True
    assert [computed(p) for p in prompts] == full  # flushed: as the first time
    assert llama_slots(server.url) == [2]
    assert flush_prompt_caches("http://127.0.0.1:9") is False  # no llama-server there
    assert llama_slots("http://127.0.0.1:9") is None
