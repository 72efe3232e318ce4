"""The step-routing server under hostile traffic: one request's failure is that request's alone, clients
never see a backend's address, credentials or an exception's text, chat templates run in jinja2's
sandbox, clients authenticate with a key, bodies are size-limited and admission is exactly as documented."""

from __future__ import annotations

import json
import logging
import threading

import httpx
import openai
import pytest
from _serve import ServeProcess, ThreadServer, metrics, serve_args, stub_backends
from _stub_server import serve_fixture

from trim_rl.live.cli import main as live_main

PROBLEM = "What is 2 + 2?"
CHAT = "/v1/chat/completions"


@pytest.fixture
def serve():
    yield from serve_fixture()


def chat_body(content: str = PROBLEM, **extra) -> dict:
    return {"model": "thr:0.5", "messages": [{"role": "user", "content": content}], **extra}


def raw(body: str) -> dict:
    """A body sent as these exact bytes (JSON may escape what Python's json.dumps would refuse to write)."""
    return {"content": body.encode("utf-8"), "headers": {"Content-Type": "application/json"}}


def hostile_requests(capacity: int) -> list[tuple[str, str, dict]]:
    """(name, path, httpx keyword arguments) of requests that must fail alone, each with a 4xx."""
    def surrogate(body: dict) -> dict:  # the text "@" becomes one with a lone surrogate, escaped as JSON allows
        return raw(json.dumps(body).replace('"@"', '"x \\ud800 y"'))

    return [
        ("lone surrogate in the problem", CHAT, surrogate(chat_body("@"))),
        ("lone surrogate in the system message", CHAT,
         surrogate({"model": "thr:0.5", "messages": [{"role": "system", "content": "@"},
                                                     {"role": "user", "content": "What is 1 + 1?"}]})),
        ("lone surrogate in one prompt of several", "/v1/completions",
         surrogate({"model": "thr:0.5", "prompt": ["What is 3 + 3?", "@"]})),
        ("stream as a string", CHAT, {"json": chat_body(stream="yes")}),
        ("max_tokens as a string", CHAT, {"json": chat_body(max_tokens="5")}),
        ("seed past int64", CHAT, {"json": chat_body(seed=2 ** 70)}),
        ("seed of 5000 digits", CHAT, raw(json.dumps(chat_body()).replace('"messages"', '"seed": ' + "9" * 5000 + ', "messages"'))),
        ("more prompts than could ever be admitted", "/v1/completions",
         {"json": {"model": "thr:0.5", "prompt": [f"What is {i} + 1?" for i in range(capacity + 1)]}}),
        ("messages not a list", CHAT, {"json": {"model": "thr:0.5", "messages": "hi"}}),
        ("not JSON", CHAT, raw("{\"model\": ")),
        ("two choices", CHAT, {"json": chat_body(n=2)}),
        ("an unknown trim field", CHAT, {"json": chat_body(trim={"budgte": 5})}),
    ]


def test_hostile_requests_in_a_round_of_ordinary_ones_fail_alone(serve):
    # slow backends, so that the ordinary requests share rounds with whatever the hostile ones could bring
    weak, strong, prm = stub_backends(serve, delay=0.1)
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--max-active", 8, "--max-queue", 8)) as srv:
        hostile = hostile_requests(16)
        out: dict[str, httpx.Response] = {}
        start = threading.Barrier(len(hostile) + 8)

        def send(name, path, kw):
            start.wait()
            out[name] = httpx.post(srv.url + path, timeout=60, **kw)

        threads = [threading.Thread(target=send, args=h) for h in hostile]
        threads += [threading.Thread(target=send, args=(f"ordinary {i}", CHAT, {"json": chat_body(f"{PROBLEM} #{i}")}))
                    for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(8):
            r = out[f"ordinary {i}"]
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["steps"] == 3
        for name, _, _ in hostile:
            r = out[name]
            assert r.status_code == 400, (name, r.status_code, r.text)
            error = r.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"], name
        surrogate = out["lone surrogate in one prompt of several"].json()["error"]
        assert surrogate["param"] == "prompt[1]" and "UTF-8" in surrogate["message"]
        assert out["stream as a string"].json()["error"]["param"] == "stream"
        assert "can never be admitted" in out["more prompts than could ever be admitted"].json()["error"]["message"]
        # and nothing the hostile requests sent reached a backend
        assert not [p for p in weak.handler.prompts if "\ud800" in p or "x \\ud800" in p]


def test_a_backend_fault_inside_one_request_fails_that_request_alone(serve, caplog):
    # the weak model answers one problem's first step with a lone surrogate (a broken backend): the next
    # call that carries it cannot be encoded, and only that request fails, with no exception text
    weak, strong, prm = stub_backends(serve, delay=0.1)
    gen = weak.handler.fake.gen
    weak.handler.fake.gen = lambda prompt, payload: (("Step 1: \ud800", "stop", "\n\n") if "#bad" in prompt
                                                     else gen(prompt, payload))
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5")) as srv:
        out = {}

        def send(name, problem):
            out[name] = httpx.post(srv.url + CHAT, timeout=60, json=chat_body(problem))

        threads = [threading.Thread(target=send, args=(f"ok{i}", f"{PROBLEM} #{i}")) for i in range(4)]
        threads.append(threading.Thread(target=send, args=("bad", f"{PROBLEM} #bad")))
        with caplog.at_level(logging.ERROR, logger="trim_rl.serve"):
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert [out[f"ok{i}"].status_code for i in range(4)] == [200] * 4
        bad = out["bad"]
        assert bad.status_code == 500 and bad.json()["error"]["code"] == "internal_error"
        assert "Unicode" not in bad.text and "surrogate" not in bad.text and "Traceback" not in bad.text
        assert "UnicodeEncodeError" in caplog.text  # the detail is in the server's log


def test_a_router_that_raises_on_one_request_fails_that_request_alone(serve):
    weak, strong, prm = stub_backends(serve, n_steps=3, low_step=2, where="#boom")
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5")) as srv:
        router = srv.served["thr:0.5"].router
        decide = router.decide

        def fragile(history, score, *args):
            if score < 0.5:  # only the "#boom" problems score low
                raise RuntimeError("secret internal state /etc/passwd")
            return decide(history, score, *args)

        router.decide = fragile
        client = srv.client()
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="thr:0.5", messages=[{"role": "user", "content": f"{PROBLEM} #boom"}])
        assert e.value.body["code"] == "internal_error" and "passwd" not in e.value.response.text
        r = client.chat.completions.create(model="thr:0.5", messages=[{"role": "user", "content": PROBLEM}])
        assert r.usage.steps == 3


def test_backend_credentials_and_addresses_never_reach_clients_but_the_log_keeps_the_detail(serve, caplog):
    weak, strong, prm = stub_backends(serve, where="#regen")
    port = strong.url.rsplit(":", 1)[1]
    secret_url = f"http://alice:hunter2@127.0.0.1:{port}"
    strong.handler.mode = "refuse"
    argv = serve_args(weak, strong, prm, "--policy", "thr:0.5")
    argv[argv.index(strong.url)] = secret_url
    with caplog.at_level(logging.WARNING, logger="trim_rl.serve"), ThreadServer(argv) as srv:
        with pytest.raises(openai.APIStatusError) as e:
            srv.client().chat.completions.create(model="thr:0.5",
                                                 messages=[{"role": "user", "content": f"{PROBLEM} #regen"}])
        body = e.value.response.text
        assert e.value.status_code == 502 and "the strong backend failed" in e.value.body["message"]
        for leak in ("hunter2", "alice", "127.0.0.1", port, "http"):
            assert leak not in body
        for path in ("/metrics", "/health", "/v1/models"):
            text = httpx.get(srv.url + path).text
            assert "hunter2" not in text and port not in text and weak.url not in text, path
        assert metrics(srv.url)  # still a valid exposition
    assert f"127.0.0.1:{port}" in caplog.text  # the operator sees where it failed ...
    assert "hunter2" not in caplog.text  # ... without the credentials


def test_the_log_formatter_and_the_exit_message_redact_credentials():
    from trim_rl.live.serve.errors import redact

    assert redact("http://u:p4ss@host:8000/v1: HTTP 401") == "http://***@host:8000/v1: HTTP 401"
    assert redact("https://user:@h/x and http://h2:9/y") == "https://***@h/x and http://h2:9/y"
    assert redact("Authorization: Bearer sk-abc123, api_key=xyz") == "Authorization: Bearer ***, api_key=***"


@pytest.mark.parametrize("evil", [
    "{{ cycler.__init__.__globals__.os.popen('touch MARK').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch MARK') }}",
])
def test_a_template_that_reaches_for_python_internals_is_refused_at_start_up(tmp_path, capsys, serve, evil, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weak, strong, prm = stub_backends(serve)
    path = tmp_path / "evil.jinja"
    path.write_text(evil + "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    code = live_main(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--chat-template", path))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--chat-template {path}" in err and ("sandbox" in err or "unsafe" in err)
    assert not (tmp_path / "MARK").exists()


def test_a_template_that_turns_unsafe_on_one_request_fails_that_request_alone(tmp_path, serve):
    weak, strong, prm = stub_backends(serve)
    path = tmp_path / "sly.jinja"
    marker = tmp_path / "MARK"
    path.write_text("{% for m in messages %}{% if '#x' in m['content'] %}"
                    "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}{% endif %}"
                    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--chat-template", path)) as srv:
        r = httpx.post(srv.url + CHAT, json=chat_body(f"{PROBLEM} #x"), timeout=60)
        assert r.status_code == 500 and r.json()["error"]["code"] == "template_error"
        assert "__init__" not in r.text and "cycler" not in r.text
        assert httpx.post(srv.url + CHAT, json=chat_body(), timeout=60).status_code == 200
    assert not marker.exists()


@pytest.mark.parametrize("how", ["flag", "file", "env"])
def test_a_server_api_key_guards_every_endpoint_but_health(serve, tmp_path, monkeypatch, how):
    weak, strong, prm = stub_backends(serve)
    key = "sk-test-0123456789"
    extra = []
    if how == "flag":
        extra = ["--server-api-key", key]
    elif how == "file":
        (tmp_path / "key").write_text(key + "\n")
        extra = ["--server-api-key-file", tmp_path / "key"]
    else:
        monkeypatch.setenv("TRIM_RL_SERVER_API_KEY", key)
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", *extra)) as srv:
        assert httpx.get(srv.url + "/health").status_code == 200
        for method, path in (("GET", "/v1/models"), ("GET", "/metrics"), ("POST", CHAT), ("POST", "/v1/completions")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
                r = httpx.request(method, srv.url + path, headers=headers, json=chat_body())
                assert r.status_code == 401, (path, headers, r.text)
                assert r.json()["error"]["code"] == "invalid_api_key" and key not in r.text
        with pytest.raises(openai.AuthenticationError):
            srv.client().chat.completions.create(model="thr:0.5", messages=[{"role": "user", "content": PROBLEM}])
        client = srv.client(api_key=key)
        assert [m.id for m in client.models.list()] == ["thr:0.5"]
        r = client.chat.completions.create(model="thr:0.5", messages=[{"role": "user", "content": PROBLEM}])
        assert r.usage.steps == 3
        assert httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_listening_beyond_loopback_without_a_key_warns(serve, tmp_path):
    weak, strong, prm = stub_backends(serve)
    proc = ServeProcess(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--host", "0.0.0.0"), tmp_path / "log")
    try:
        assert "without a client API key" in (tmp_path / "log").read_text()
    finally:
        proc.stop()
    keyed = ServeProcess(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--host", "127.0.0.1"), tmp_path / "log2")
    try:
        assert "without a client API key" not in (tmp_path / "log2").read_text()
    finally:
        keyed.stop()


def test_a_body_beyond_the_limit_is_413_before_it_is_read(serve):
    weak, strong, prm = stub_backends(serve)
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--max-body-mb", 0.5)) as srv:
        big = chat_body("x" * 600_000)
        r = httpx.post(srv.url + CHAT, json=big, timeout=60)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        def chunks():  # no Content-Length: the server counts as the body arrives
            data = json.dumps(big).encode()
            for i in range(0, len(data), 65536):
                yield data[i:i + 65536]

        r = httpx.post(srv.url + CHAT, content=chunks(), headers={"Content-Type": "application/json"}, timeout=60)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert httpx.post(srv.url + CHAT, json=chat_body("y" * 1000), timeout=60).status_code == 200


def _burst(url: str, n: int, body: dict) -> list[int]:
    statuses = []
    start = threading.Barrier(n)

    def one():
        start.wait()
        statuses.append(httpx.post(url + CHAT, json=body, timeout=60).status_code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


def test_admission_takes_exactly_max_active_plus_max_queue(serve):
    weak, strong, prm = stub_backends(serve, delay=0.3)
    # three requests at once fit 1 active + 2 queued, whatever the scheduler is doing
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--max-active", 1, "--max-queue", 2)) as srv:
        assert _burst(srv.url, 3, chat_body()) == [200, 200, 200]
        assert _burst(srv.url, 4, chat_body()) == [200, 200, 200, 429]
    # --max-queue 0: no waiting, but up to --max-active are served
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--max-active", 2, "--max-queue", 0)) as srv:
        assert _burst(srv.url, 2, chat_body()) == [200, 200]
        assert _burst(srv.url, 3, chat_body()) == [200, 200, 429]
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"
        # a completions request is admitted whole or not at all; one that could never fit is 400, not 429
        ok = httpx.post(srv.url + "/v1/completions", json={"model": "thr:0.5", "prompt": ["1+1?", "2+2?"]}, timeout=60)
        assert ok.status_code == 200 and len(ok.json()["choices"]) == 2
        never = httpx.post(srv.url + "/v1/completions", json={"model": "thr:0.5", "prompt": ["a", "b", "c"]}, timeout=60)
        assert never.status_code == 400 and never.headers.get("retry-after") is None


@pytest.mark.parametrize("flag, value", [("--port", "99999"), ("--port", "-1"), ("--max-body-mb", "0"),
                                         ("--max-body-mb", "nan")])
def test_out_of_range_server_flags_are_one_line_errors(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        live_main(["serve", "--weak-url", "http://127.0.0.1:1", "--policy", "weak-only", flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and len(err.strip().splitlines()) == 1


def test_an_unreadable_or_empty_key_file_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / "empty").write_text("\n")
    for path in (tmp_path / "missing", tmp_path / "empty"):
        code = live_main(["serve", "--weak-url", "http://127.0.0.1:1", "--policy", "weak-only",
                          "--server-api-key-file", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and f"--server-api-key-file {path}" in err and len(err.strip().splitlines()) == 1
