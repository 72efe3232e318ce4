"""The simulated live backend's answers: weak and strong steps and PRM scores drawn from the calibrated
step model (:mod:`trim_rl.sim.model`), in the formats of ``vllm serve`` (see ``tests/live/_vllm.py``).

The HTTP server around it is :mod:`trim_rl.sim.server` (``python -m trim_rl.sim serve``).  Servers are
stateless, so everything the simulator needs is read back from the prompt:

- **Problem**: the text names a simulated episode, ``sim problem 17 of math500/test, draw 0.``, then
  the real problem's text (:func:`problem_text`).  Problem 17 is the 18th problem of the profile's
  test split (the split the trees use); draw ``k`` is the k-th independent episode of it (its own
  step hardness, as the trees' draws).  The reference answer is a synthetic integer fixed by
  (profile, split, problem) (:func:`reference_answer`); :func:`problems` and :func:`write_problems`
  give the rows that ``python -m trim_rl.live decode --problems FILE`` reads.
- **Steps**: every step starts with a tag ``[sim w0 3fa9c2]``: who wrote it (``w`` weak, ``s``
  strong), its latent state (0 correct, 2 the first wrong step, 1 written after an error) and a
  nonce.  A step is drawn with :func:`~trim_rl.sim.model.draw_steps` from a generator seeded by a
  hash of (seed, profile, episode, the tags before it, model, nonce); the nonce is itself a hash of
  the rest for greedy requests, so a draft, a regeneration and a PRM score are functions of (seed,
  problem, prefix, model).  A sampled request (temperature > 0) folds its ``seed`` into the nonce (a
  random one without a seed), as vLLM samples.  The PRM score of a step is the score drawn with it;
  the scorer replays the tags to find it, and a tag whose state the replay does not give (a step
  written by a server with another seed or profile) is refused.
- **Text and tokens**: a step is ``[tag] Step N: <filler>.``, 4 characters per token (the token
  count drawn by the model; ``usage`` and ``token_ids`` report it); a final step ends with
  ``The answer is $\\boxed{A}$.``, A the reference answer when no accepted step is wrong, else a
  wrong integer.  A step longer than ``max_tokens`` is cut there (``finish_reason: "length"``) and
  keeps its tag.  Prompts are counted at 4 characters per token against ``max_model_len``.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from trim_rl.data.problems import Problem
from trim_rl.sim.model import STRONG, WEAK, Episodes, draw_steps, make_episodes
from trim_rl.sim.params import SimParams, load_params
from trim_rl.sim.profiles import SPLITS, ProfileProblems, profile_problems, stable_uniform

MODEL_NAMES = {"weak": "sim-weak", "strong": "sim-strong", "prm": "sim-prm"}
DEFAULT_MAX_MODEL_LEN = 32768
STEP_TAG = "<extra_0>"  # Qwen2.5-Math-PRM's step separator, one score row per tag
MAX_PROMPT_STEPS = 512  # a prompt with more tags is refused (the simulator ends solutions at 30 steps)
CHARS_PER_TOKEN = 4
PROBLEM_RE = re.compile(r"sim problem (\d{1,9}) of ([A-Za-z0-9_.-]+)/(train|val|test), draw (\d{1,9})")
TAG_RE = re.compile(r"\[sim ([ws])([012]) ([0-9a-f]{6})\]")
_FILLER = "we carry the simulated computation one step further and check the result "
_CACHE = 1 << 18  # drawn steps kept (about 200 bytes each)


def _remember(cache: dict, key, value) -> None:
    """``cache[key] = value``, first dropping the oldest entry when the cache holds ``_CACHE`` already."""
    if len(cache) >= _CACHE:
        cache.pop(next(iter(cache)))
    cache[key] = value


class Tag(NamedTuple):
    model: int  # WEAK / STRONG
    state: int
    nonce: str

    def text(self) -> str:
        return f"[sim {'ws'[self.model]}{self.state} {self.nonce}]"


class Draw(NamedTuple):
    state: int
    prm: float
    final: bool
    tokens: int


class SimInputError(ValueError):
    """A request the simulator cannot answer (HTTP 400, vLLM's error body); ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, kind: str = "BadRequestError"):
        super().__init__(message)
        self.param, self.status, self.kind = param, status, kind


def _texts(p: dict, key: str) -> list[str]:
    """A request's ``key``: a string or a non-empty list of strings, as a list."""
    texts = p.get(key)
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(q, str) for q in texts):
        raise SimInputError(f"{key}: expected a string or a non-empty list of strings", key)
    return texts


def problem_text(profile: str, split: str, index: int, draw: int, source: str = "") -> str:
    """The text of a simulated problem; ``source`` (the real problem's text) follows the header."""
    head = f"sim problem {index} of {profile}/{split}, draw {draw}."
    return f"{head}\n\n{source}" if source else head


def reference_answer(profile: str, split: str, index: int) -> str:
    """The simulated problem's answer: an integer in [10, 9999] fixed by (profile, split, problem)."""
    return str(10 + int(stable_uniform(f"{profile}|{split}|{index}", "sim-answer") * 9990))


def count_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _rng(*key) -> np.random.Generator:
    h = hashlib.sha256(repr(key).encode()).digest()
    return np.random.default_rng([int.from_bytes(h[i : i + 4], "little") for i in range(0, 16, 4)])


def _hex(*key) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()[:6]


def problems(profile: str = "math500", split: str = "test", draws: int = 1, limit: int | None = None,
             params: SimParams | None = None) -> list[Problem]:
    """Simulated problems of one split (problem-major, ``draws`` episodes each), as ``decode`` loads them
    from :func:`write_problems`'s file (``problem_id`` ``sim-PROFILE/SPLIT-I-D``)."""
    return [Problem(f"sim-{profile}/{r['id']}", f"sim-{profile}", r["problem"], r["answer"], r.get("level"))
            for r in problem_rows(profile, split, draws, limit, params)]


def problem_rows(profile: str = "math500", split: str = "test", draws: int = 1, limit: int | None = None,
                 params: SimParams | None = None) -> list[dict]:
    """The JSON rows of :func:`write_problems`: id, problem, answer, level (where the source has one),
    source (the real problem's id)."""
    if split not in SPLITS:
        raise ValueError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    prof = _profile(params or load_params(), profile)
    pp = profile_problems(prof, split)
    n = len(pp.problems) if limit is None else min(int(limit), len(pp.problems))
    rows = []
    for i in range(n):
        src = pp.problems[i]
        for k in range(int(draws)):
            row = {"id": f"{split}-{i}-{k}", "problem": problem_text(profile, split, i, k, src.problem),
                   "answer": reference_answer(profile, split, i), "source": src.problem_id}
            if src.level is not None:
                row["level"] = int(src.level)
            rows.append(row)
    return rows


def write_problems(path: str | Path, profile: str = "math500", split: str = "test", draws: int = 1,
                   limit: int | None = None, params: SimParams | None = None) -> int:
    """Write the simulated problems as JSON Lines (``decode --problems FILE``); returns the row count."""
    import json

    from trim_rl.fsutil import atomic_output

    rows = problem_rows(profile, split, draws, limit, params)
    with atomic_output(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return len(rows)


def _profile(params: SimParams, profile: str):
    if profile not in params.profiles:
        raise ValueError(f"--profile {profile!r}: unknown profile; choose one of {', '.join(sorted(params.profiles))}")
    return params.profiles[profile]


@dataclass
class SimBackend:
    """Answers ``/v1/completions``, ``/pooling``, ``/tokenize`` and ``/v1/models`` payloads as the weak,
    strong and PRM servers of one profile would (see the module notes); the model is picked by the
    request's ``model`` field (default: weak for completions, the PRM for pooling)."""

    profile: str = "math500"
    seed: int = 0
    params: SimParams | None = None
    max_model_len: int = DEFAULT_MAX_MODEL_LEN

    def __post_init__(self):
        self.params = self.params or load_params()
        self.prof = _profile(self.params, self.profile)
        self.m = self.params.model
        self.names = dict(MODEL_NAMES)
        self._splits: dict[str, ProfileProblems] = {}
        self._episodes: dict[tuple, Episodes] = {}
        self._draws: dict[tuple, Draw] = {}
        self._lock = threading.Lock()  # one server's event loop calls in; tests may call from threads
        self._ids = 0
        self.stats = {"completions_requests": 0, "pooling_requests": 0, "prompts": 0, "pooling_inputs": 0,
                      "completion_tokens": {self.names["weak"]: 0, self.names["strong"]: 0}}

    # -- the simulator -----------------------------------------------------------------------------
    def _split(self, split: str) -> ProfileProblems:
        if split not in self._splits:
            self._splits[split] = profile_problems(self.prof, split)
        return self._splits[split]

    def parse_problem(self, text: str, field: str) -> tuple[str, int, int]:
        """(split, problem index, draw) named by a prompt."""
        m = PROBLEM_RE.search(text)
        if m is None:
            raise SimInputError(f"{field}: no simulated problem in the text (expected 'sim problem I of "
                                f"{self.profile}/SPLIT, draw D'; python -m trim_rl.sim serve --write-problems FILE "
                                f"writes them)", field)
        index, profile, split, draw = int(m.group(1)), m.group(2), m.group(3), int(m.group(4))
        if profile != self.profile:
            raise SimInputError(f"{field}: the problem is of profile {profile!r}; this server simulates "
                                f"{self.profile!r}", field)
        n = len(self._split(split).problems)
        if index >= n:
            raise SimInputError(f"{field}: sim problem {index} of {profile}/{split}: the split has {n} problems "
                                f"(0 to {n - 1})", field)
        return split, index, draw

    def _episode(self, ref: tuple[str, int, int]) -> Episodes:
        ep = self._episodes.get(ref)
        if ep is None:
            split, i, draw = ref
            pp = self._split(split)
            one = ProfileProblems([pp.problems[i]], pp.level[i : i + 1], pp.z[i : i + 1], pp.z_len[i : i + 1])
            ep = make_episodes(self.m, self.prof, one, 1, _rng(self.seed, self.profile, ref, "episode"))
            _remember(self._episodes, ref, ep)
        return ep

    def _draw(self, ref, prior: tuple[Tag, ...], model: int, nonce: str, state: int, min_prior: float) -> Draw:
        """The step ``model`` writes after ``prior`` (whose latent state and min PRM score are given)."""
        key = (ref, prior, model, nonce)
        d = self._draws.get(key)
        if d is None:
            rng = _rng(self.seed, self.profile, ref, tuple(t.text() for t in prior), model, nonce)
            s = draw_steps(self.m, self.prof, self._episode(ref), np.zeros(1, dtype=np.int64),
                           np.array([len(prior)]), np.array([state]), np.array([min_prior]), model, rng)
            d = Draw(int(s.state[0]), float(s.prm[0]), bool(s.final[0]), int(s.tokens[0]))
            _remember(self._draws, key, d)
        return d

    def replay(self, ref, tags: Sequence[Tag], field: str = "prompt") -> tuple[list[Draw], int, float]:
        """The draws of the tagged steps, the prefix's latent state (0 / 1) and min PRM score after them."""
        state, min_prior, draws = 0, 1.0, []
        tags = tuple(tags)
        for j, t in enumerate(tags):
            d = self._draw(ref, tags[:j], t.model, t.nonce, state, min_prior)
            if d.state != t.state:
                raise SimInputError(f"{field}: step {j + 1}'s tag {t.text()} is not this simulator's (written by a "
                                    f"server with another --seed or --profile?)", field)
            draws.append(d)
            state = 0 if d.state == 0 and state == 0 else 1
            min_prior = min(min_prior, d.prm)
        return draws, state, min_prior

    def tags(self, text: str, field: str) -> list[Tag]:
        found = [Tag(WEAK if m.group(1) == "w" else STRONG, int(m.group(2)), m.group(3)) for m in TAG_RE.finditer(text)]
        if len(found) > MAX_PROMPT_STEPS:
            raise SimInputError(f"{field}: {len(found)} steps; the simulator answers at most {MAX_PROMPT_STEPS}", field)
        return found

    def step(self, prompt: str, model: int, nonce: str | None = None, field: str = "prompt") -> tuple[str, Draw]:
        """The next step of the problem and steps in ``prompt``: its text and draw (``nonce`` None: greedy)."""
        ref = self.parse_problem(prompt, field)
        tags = tuple(self.tags(prompt, field))
        _, state, min_prior = self.replay(ref, tags, field)
        if nonce is None:
            nonce = _hex(self.seed, self.profile, ref, tuple(t.text() for t in tags), model, "greedy")
        d = self._draw(ref, tags, model, nonce, state, min_prior)
        tag = Tag(model, d.state, nonce)
        head = f"{tag.text()} Step {len(tags) + 1}: "
        tail = "."
        if d.final:
            answer = reference_answer(self.profile, ref[0], ref[1])
            if state or d.state:  # a wrong solution: another integer, fixed by the nonce
                answer = str(int(answer) + 1 + int(nonce, 16) % 997)
            tail = f". The answer is $\\boxed{{{answer}}}$."
        room = CHARS_PER_TOKEN * d.tokens - len(head) - len(tail)
        body = (_FILLER * (room // len(_FILLER) + 1))[: max(room, 1)].strip() or "so"
        return head + body + tail, d

    # -- the endpoints -----------------------------------------------------------------------------
    def models(self) -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "vllm",
                                            "root": name, "parent": None, "max_model_len": self.max_model_len,
                                            "permission": []} for name in self.names.values()]}

    def _role(self, payload: dict, default: str, allowed: tuple[str, ...], api: str) -> str:
        name = payload.get("model") or self.names[default]
        roles = {v: k for k, v in self.names.items()}
        if name not in roles:
            raise SimInputError(f"The model `{name}` does not exist.", "model", 404, "NotFoundError")
        if roles[name] not in allowed:
            raise SimInputError(f"The model `{name}` does not support the {api} API.", "model")
        return roles[name]

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-sim-{self._ids}"

    def completions(self, p: dict) -> tuple[dict, int]:
        """``/v1/completions``: the answer and the most tokens generated for one prompt (for the latency)."""
        with self._lock:
            return self._completions(p)

    def _completions(self, p: dict) -> tuple[dict, int]:
        role = self._role(p, "weak", ("weak", "strong"), "Completions")
        prompts = _texts(p, "prompt")
        if p.get("stream"):
            raise SimInputError("stream: the simulated backend answers whole completions only", "stream")
        if p.get("n", 1) != 1:
            raise SimInputError("n: the simulated backend answers one choice per prompt", "n")
        if p.get("logprobs") is not None:
            raise SimInputError("logprobs: the simulated backend has no token probabilities", "logprobs")
        max_tokens = p.get("max_tokens", 16)
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise SimInputError(f"max_tokens: expected an integer >= 1, got {max_tokens!r}", "max_tokens")
        temperature, seed = p.get("temperature", 1.0), p.get("seed")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature >= 0:
            raise SimInputError(f"temperature: expected a number >= 0, got {temperature!r}", "temperature")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise SimInputError(f"seed: expected an integer, got {seed!r}", "seed")
        for q in prompts:  # one prompt over the context fails the whole request, as vLLM does
            if count_tokens(q) >= self.max_model_len:
                raise self._context_error(count_tokens(q))
        model = WEAK if role == "weak" else STRONG
        choices, used, made, longest = [], 0, 0, 0
        for i, q in enumerate(prompts):
            nonce = None
            if temperature > 1e-5:  # vLLM samples greedily below 1e-5
                nonce = _hex(seed, q) if seed is not None else secrets.token_hex(3)
            text, d = self.step(q, model, nonce, "prompt" if len(prompts) == 1 else f"prompt[{i}]")
            room = self.max_model_len - count_tokens(q)
            limit = room if max_tokens is None else min(max_tokens, room)
            k, finish, stop_reason = d.tokens, "stop", (None if d.final else "\n\n")  # None: the model's EOS
            if k > limit:  # cut at max_tokens; the tag stays, so the step is still the simulator's
                tag_len = len(text.split("]", 1)[0]) + 1
                text, k, finish, stop_reason = text[: max(CHARS_PER_TOKEN * limit, tag_len)], limit, "length", None
            choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": finish,
                            "stop_reason": stop_reason,
                            "token_ids": list(range(1000, 1000 + k)) if p.get("return_token_ids") else None,
                            "prompt_logprobs": None, "prompt_token_ids": None, "routed_experts": None})
            used += count_tokens(q)
            made += k
            longest = max(longest, k)
        self.stats["completions_requests"] += 1
        self.stats["prompts"] += len(prompts)
        self.stats["completion_tokens"][self.names[role]] += made
        answer = {"id": self._next_id("cmpl"), "object": "text_completion", "created": int(time.time()),
                  "model": self.names[role], "choices": choices, "service_tier": None, "system_fingerprint": None,
                  "usage": {"prompt_tokens": used, "total_tokens": used + made, "completion_tokens": made,
                            "prompt_tokens_details": None}}
        return answer, longest

    def pooling(self, p: dict) -> dict:
        """``/pooling``: one ``[p_neg, p_pos]`` row per ``<extra_0>`` of each input, the PRM score drawn
        with the step before it."""
        with self._lock:
            return self._pooling(p)

    def _pooling(self, p: dict) -> dict:
        role = self._role(p, "prm", ("prm",), "pooling")
        inputs = _texts(p, "input")
        if p.get("task") not in (None, "token_classify"):
            raise SimInputError(f"Unsupported task: {p['task']!r} Supported tasks: ('token_classify',)", "task")
        for q in inputs:
            if count_tokens(q) > self.max_model_len:
                raise self._context_error(count_tokens(q))
        data = []
        for i, q in enumerate(inputs):
            field = "input" if len(inputs) == 1 else f"input[{i}]"
            ref = self.parse_problem(q, field)
            tags = self.tags(q, field)
            if len(tags) != q.count(STEP_TAG):
                raise SimInputError(f"{field}: {q.count(STEP_TAG)} step tags {STEP_TAG} for {len(tags)} simulated "
                                    f"steps (each step is one simulator-tagged step followed by {STEP_TAG})", field)
            draws, _, _ = self.replay(ref, tags, field)
            data.append({"index": i, "object": "pooling", "data": [[round(1.0 - d.prm, 4), d.prm] for d in draws]})
        self.stats["pooling_requests"] += 1
        self.stats["pooling_inputs"] += len(inputs)
        used = sum(count_tokens(q) for q in inputs)
        return {"id": self._next_id("pool"), "object": "list", "created": int(time.time()), "model": self.names[role],
                "data": data, "usage": {"prompt_tokens": used, "total_tokens": used, "completion_tokens": 0,
                                        "prompt_tokens_details": None}}

    def tokenize(self, p: dict) -> dict:
        text = p.get("prompt")
        if not isinstance(text, str):
            raise SimInputError("prompt: expected a string", "prompt")
        n = count_tokens(text)
        return {"count": n, "max_model_len": self.max_model_len, "tokens": list(range(1000, 1000 + n)),
                "token_strs": None}

    def _context_error(self, tokens: int) -> SimInputError:
        return SimInputError(f"This model's maximum context length is {self.max_model_len} tokens. However, your "
                             f"prompt contains {tokens} input tokens, which exceeds this limit even without any "
                             f"output tokens. Please reduce the length of the input prompt.", "input_tokens")


def error_body(exc: SimInputError) -> dict:
    """vLLM's ``ErrorResponse``."""
    return {"error": {"message": str(exc), "type": exc.kind, "param": exc.param, "code": exc.status}}
