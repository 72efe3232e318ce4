"""Process reward scorers: ``(problem, steps) -> one score in [0, 1] per step``.

- :class:`VLLMPoolingPRM`: a process reward model served by ``vllm serve`` (Qwen2.5-Math-PRM-7B),
  through the ``/pooling`` endpoint, every input of a call in one request (``input`` takes a list).
- :class:`VLLMInProcessPRM`: the same model in-process through ``LLM.encode``.
- :class:`SelfVerifyScorer`: any completions endpoint with logprobs asks itself whether the newest
  step is correct and reads P(yes); runs on a CPU (llama.cpp).

Qwen2.5-Math-PRM input: the steps joined and followed by ``<extra_0>`` in the assistant turn; the
score of a step is the positive-class probability at its separator.  vLLM (0.9.2 onwards, every
version read up to 0.33) pools this model's output at the step tag (``Qwen2ForProcessRewardModel``:
STEP pooling, ``step_tag_id`` 151651 set by its model config) and applies the softmax, so
``/pooling`` returns one ``[p_neg, p_pos]`` row per step, in the model's dtype (bfloat16 rows sum to
1 +- 2e-3).  :func:`step_probabilities` also reads per-token rows (a server started with another
pooler config: the rows at the step tag are picked with the token ids of ``/tokenize``), logits, and
one probability or logit per step.

Scorers are async first (``ascore_last_detail``, ``ascore_last``, ``ascore``, awaited on the
caller's event loop); their sync methods of the same names without the ``a`` run them to their end
(the batch commands).  Every scorer has :meth:`score_last_detail`, which fits over-long inputs into the scorer's context by
leaving out the earliest steps (:mod:`trim_rl.live.window`); a step that cannot be scored at all has
the value None, and the decoder and collector use :data:`UNSCORED` for it.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Sequence

from trim_rl.live.aio import run_sync
from trim_rl.live.http import ContextLengthError, EngineError, HTTPSettings, check_number, connect
from trim_rl.live.prompts import DEFAULT_SYSTEM, STEP_SEPARATOR, ChatTemplate
from trim_rl.live.window import Score, StepWindow

Item = tuple[str, Sequence[str]]  # (problem, steps)
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TAG = "<extra_0>"
STEP_TAG_ID = 151651  # <extra_0> in the Qwen2.5 vocabulary
#: What the policy sees for a step the scorer could not score (its newest step alone does not fit
#: the scorer's context): no evidence either way.
UNSCORED = 0.5


class PRMScorer(Protocol):
    name: str

    async def ascore_last_detail(self, items: Sequence[Item]) -> list[Score]: ...

    def score(self, items: Sequence[Item]) -> list[list[float | None]]: ...

    def score_last(self, items: Sequence[Item]) -> list[float | None]: ...

    def score_last_detail(self, items: Sequence[Item]) -> list[Score]: ...


def _positive(row, where: str = "pooling output") -> float:
    """Positive-class probability from a row: [p_neg, p_pos], two logits, or one probability/logit."""
    if isinstance(row, (int, float)) and not isinstance(row, bool):
        v = check_number(where, "data[].data[]", row)
        return v if 0.0 <= v <= 1.0 else 1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, v))))
    if not isinstance(row, (list, tuple)) or not row:
        raise EngineError(where, f"bad value in the answer: data[].data[] = {str(row)[:80]!r} (expected a row of numbers)")
    vals = [check_number(where, "data[].data[][]", x) for x in row]
    if len(vals) == 1:
        return _positive(vals[0], where)
    if all(0.0 <= v <= 1.0 for v in vals) and abs(sum(vals) - 1.0) < 1e-2:  # bf16 probabilities: off by up to 2e-3
        return vals[-1]
    m = max(vals)
    ex = [math.exp(v - m) for v in vals]
    return ex[-1] / sum(ex)


def step_probabilities(rows, n_steps: int, token_ids: Sequence[int] | None = None,
                       step_tag_id: int = STEP_TAG_ID, where: str = "pooling output") -> list[float] | None:
    """Per-step positive probabilities from a pooling output; None when per-token rows need token ids."""
    if isinstance(rows, dict) and "data" in rows:
        rows = rows["data"]
    if not isinstance(rows, (list, tuple)):
        raise EngineError(where, f"bad value in the answer: data[].data = {str(rows)[:80]!r} (expected a list of rows)")
    rows = list(rows)
    if len(rows) == n_steps:
        return [_positive(r, where) for r in rows]
    if token_ids is None:
        return None
    at = [i for i, t in enumerate(token_ids) if int(t) == step_tag_id]
    if len(at) != n_steps or len(rows) < len(token_ids):
        raise ValueError(f"pooling output has {len(rows)} rows and the prompt {len(at)} step tags for {n_steps} steps")
    return [_positive(rows[i], where) for i in at]


@dataclass
class _QwenPRMPrompt:
    template: ChatTemplate = field(default_factory=lambda: ChatTemplate.resolve("chatml"))
    system: str = QWEN_PRM_SYSTEM
    step_tag: str = STEP_TAG

    def prompt(self, problem: str, steps: Sequence[str]) -> str:
        answer = "".join(s + self.step_tag for s in steps)
        return self.template.render([{"role": "system", "content": self.system}, {"role": "user", "content": problem},
                                     {"role": "assistant", "content": answer}], add_generation_prompt=False)


def _last(scores: list[Score]) -> list[Score]:
    return [Score(None if s.value is None else s.value[-1], s.dropped) for s in scores]


def _every(scores: list[Score], items: Sequence[Item]) -> list[list[float | None]]:
    return [[None] * s.dropped + (list(s.value) if s.value is not None else [None] * (len(steps) - s.dropped))
            for s, (_, steps) in zip(scores, items)]


class _Windowed:
    """``score_last`` / ``score`` (and their async forms) on top of ``_aall`` (one go) and ``_aeach``
    (per item), with the earliest steps dropped where an input does not fit."""

    window: StepWindow

    async def _awindowed(self, items: Sequence[Item]) -> list[Score]:
        return await self.window.arun(items, self._aall, self._aeach)

    def _windowed(self, items: Sequence[Item]) -> list[Score]:
        return run_sync(self._awindowed(items)) if items else []

    async def ascore_last_detail(self, items: Sequence[Item]) -> list[Score]:
        """Per item: the newest step's score (None: unscored) and the earliest steps left out."""
        return _last(await self._awindowed(items))

    def score_last_detail(self, items: Sequence[Item]) -> list[Score]:
        """:meth:`ascore_last_detail`, run to its end."""
        return _last(self._windowed(items))

    async def ascore_last(self, items: Sequence[Item]) -> list[float | None]:
        return [s.value for s in await self.ascore_last_detail(items)]

    def score_last(self, items: Sequence[Item]) -> list[float | None]:
        return [s.value for s in self.score_last_detail(items)]

    async def ascore(self, items: Sequence[Item]) -> list[list[float | None]]:
        """Every step's score; steps left out of an over-long input have None."""
        return _every(await self._awindowed(items), items)

    def score(self, items: Sequence[Item]) -> list[list[float | None]]:
        """:meth:`ascore`, run to its end."""
        return _every(self._windowed(items), items)

    async def _aall(self, items: list[Item]) -> list[list[float]]:
        raise NotImplementedError

    async def _aeach(self, items: list[Item]) -> list:
        raise NotImplementedError


class VLLMPoolingPRM(_Windowed):
    """A PRM behind ``vllm serve`` (``/pooling``); ``url`` may list replicas.  The inputs of one call
    go in one request per server."""

    MAX_INPUTS = 512  # inputs per request

    def __init__(self, url, model: str | None = None, http: HTTPSettings | None = None,
                 step_tag_id: int = STEP_TAG_ID, prompt: _QwenPRMPrompt | None = None, api_key: str | None = None,
                 wait_ready_s: float = 0.0):
        self.client = connect(url, http, api_key, wait_ready_s)
        self.model = model or self.client.model_id()
        self.name = self.model
        self.step_tag_id = int(step_tag_id)
        self.builder = prompt or _QwenPRMPrompt()
        self.window = StepWindow()

    def _payload(self, prompts: list[str]) -> dict:
        # no "task": every vLLM version uses the model's own (token_classify for a PRM; 0.10 has no
        # such field); the prompt is rendered here, so no BOS is added
        return {"model": self.model, "input": prompts, "encoding_format": "float", "add_special_tokens": False}

    async def _pool(self, chunks: list[list[str]], context_errors: bool = False) -> list:
        return await self.client.areplies("/pooling", [self._payload(c) for c in chunks], context_errors=context_errors)

    def _rows(self, reply, n: int) -> list:
        where = self.client.url("/pooling", reply.url)
        try:
            data = sorted(reply.data["data"], key=lambda d: d["index"])
            rows = [d["data"] for d in data]
        except (KeyError, TypeError, AttributeError):
            raise EngineError(where, f"unexpected answer: {str(reply.data)[:300]}") from None
        if len(rows) != n:
            raise EngineError(where, f"unexpected answer: {len(rows)} outputs for {n} inputs: {str(reply.data)[:200]}")
        return rows

    async def _probs(self, problem_steps: Item, prompt: str, rows, reply) -> list[float]:
        where = self.client.url("/pooling", reply.url)
        probs = step_probabilities(rows, len(problem_steps[1]), None, self.step_tag_id, where)
        if probs is None:  # per-token rows: find the step tags
            tok = await self.client.apost("/tokenize", {"model": self.model, "prompt": prompt, "add_special_tokens": False})
            probs = step_probabilities(rows, len(problem_steps[1]), tok.get("tokens"), self.step_tag_id, where)
        return probs

    async def _aall(self, items: list[Item]) -> list[list[float]]:
        prompts = [self.builder.prompt(p, s) for p, s in items]
        n_chunks = max(len(self.client.servers), math.ceil(len(prompts) / self.MAX_INPUTS))
        size = max(1, math.ceil(len(prompts) / n_chunks))
        chunks = [prompts[i : i + size] for i in range(0, len(prompts), size)]
        out, i = [], 0
        for chunk, reply in zip(chunks, await self._pool(chunks)):
            for rows in self._rows(reply, len(chunk)):
                out.append(await self._probs(items[i], prompts[i], rows, reply))
                i += 1
        return out

    async def _aeach(self, items: list[Item]) -> list:
        prompts = [self.builder.prompt(p, s) for p, s in items]
        out = []
        for item, prompt, reply in zip(items, prompts, await self._pool([[p] for p in prompts], context_errors=True)):
            if isinstance(reply, ContextLengthError):
                out.append(reply)
            else:
                out.append(await self._probs(item, prompt, self._rows(reply, 1)[0], reply))
        return out


def _pooling_outputs(llm, prompts):
    """``LLM.encode`` across vLLM versions: ``pooling_task="token_classify"`` where vLLM has that task
    (it requires a task from 0.24 on, and ``LLM.reward`` is gone), else ``LLM.reward`` (0.8 - 0.10)."""
    try:
        from typing import get_args

        from vllm.tasks import PoolingTask

        has_token_classify = "token_classify" in get_args(PoolingTask)
    except ImportError:  # vLLM 0.8: no vllm.tasks
        has_token_classify = False
    if has_token_classify:
        return llm.encode(prompts, pooling_task="token_classify", use_tqdm=False)
    run = getattr(llm, "reward", None) or llm.encode
    return run(prompts, use_tqdm=False)


class VLLMInProcessPRM(_Windowed):
    """A PRM in-process with vLLM; ``llm_kwargs`` go to ``vllm.LLM`` (``--vllm-arg prm:KEY=VALUE``).

    Inputs are tokenised here (exactly as the engine would) so an over-long one is shortened before it
    reaches the engine; the step tags are found in each output's ``prompt_token_ids``.  ``LLM.encode``
    blocks, so the async methods run the sync ones in a worker thread, one call at a time.
    """

    def __init__(self, model: str, step_tag_id: int = STEP_TAG_ID, prompt: _QwenPRMPrompt | None = None, **llm_kwargs):
        from vllm import LLM

        self.name = model
        self.step_tag_id = int(step_tag_id)
        self.builder = prompt or _QwenPRMPrompt()
        self.window = StepWindow()
        try:  # vLLM >= 0.10
            self.llm = LLM(model=model, runner="pooling", **llm_kwargs)
        except TypeError:  # 0.8 - 0.9
            self.llm = LLM(model=model, task="reward", **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._lock = threading.Lock()

    def _windowed(self, items: Sequence[Item]) -> list[Score]:
        with self._lock:
            return self.window.run(items, self._all, self._each)

    async def _awindowed(self, items: Sequence[Item]) -> list[Score]:
        return await asyncio.to_thread(self._windowed, items)

    def _encode(self, items: list[Item]) -> list:
        prompts = [self.builder.prompt(p, s) for p, s in items]
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        fits = [i for i, t in enumerate(ids) if len(t) <= self.max_model_len]
        out: list = [ContextLengthError(f"vllm:{self.name}", f"This model's maximum context length is "
                                                             f"{self.max_model_len} tokens", 400)] * len(items)
        outs = _pooling_outputs(self.llm, [{"prompt_token_ids": ids[i]} for i in fits]) if fits else []
        for i, o in zip(fits, outs):
            rows = o.outputs.data.tolist()
            token_ids = getattr(o, "prompt_token_ids", None) or ids[i]
            out[i] = step_probabilities(rows, len(items[i][1]), token_ids, self.step_tag_id, f"vllm:{self.name}")
        return out

    def _all(self, items: list[Item]) -> list[list[float]]:
        out = self._encode(items)
        for v in out:
            if isinstance(v, ContextLengthError):
                raise v
        return out

    def _each(self, items: list[Item]) -> list:
        return self._encode(items)


VERIFY_QUESTION = ("Here is a math problem and the start of a solution.\n\nProblem:\n{problem}\n\n"
                   "Solution so far:\n{steps}\n\nIs Step {n} correct? Answer yes or no.")
#: the question of the ``continued`` layout, asked after the steps in the step prompt's own conversation
CONTINUED_QUESTION = "Is the last step above correct? Answer yes or no."
#: ``separate``: the problem and the numbered steps restated in a question of its own; ``continued``:
#: the step prompt (system, problem, steps) with the question as the next user turn, so that a server's
#: prefix cache holds the step generation and its check together
VERIFY_PROMPTS = ("separate", "continued")


class SelfVerifyScorer(_Windowed):
    """P(yes) that the newest step is correct, from a completions endpoint's top logprobs.

    The question goes to the model's chat template; the answer's first token is read from the top
    ``top_logprobs`` alternatives: score = P(yes) / (P(yes) + P(no)), 0.5 when neither appears.

    The alternatives are read in both forms servers give: the completions API's ``logprobs:
    {tokens, token_logprobs, top_logprobs: [{token: logprob}]}`` (vLLM, llama-cpp-python) and
    llama.cpp's ``llama-server``'s chat form ``logprobs: {content: [{token, logprob, top_logprobs:
    [{id, token, bytes, logprob}]}]}``.  Against vLLM (``owned_by: "vllm"``, known when ``model`` is
    not given) the questions of a call go up to ``prompts_per_request`` per request; an answer to
    several prompts (vLLM's choices by ``index``, or llama-server's array of completion objects)
    that cannot be read is asked again one question per request, and so are all later ones.

    ``verify_prompt`` (:data:`VERIFY_PROMPTS`): ``continued`` asks in the step prompt's conversation
    (:func:`~trim_rl.live.prompts.step_prompt` with ``system``, then the question as a user turn), so
    the check of a step starts with the tokens that generated it and a server with a prefix cache
    (vLLM's ``--enable-prefix-caching``, llama-server's slots) computes only the question.
    """

    def __init__(self, url, model: str | None = None, template: ChatTemplate | None = None,
                 http: HTTPSettings | None = None, top_logprobs: int = 10, api_key: str | None = None,
                 wait_ready_s: float = 0.0, prompts_per_request: int | None = None,
                 verify_prompt: str = "separate", system: str = DEFAULT_SYSTEM):
        if verify_prompt not in VERIFY_PROMPTS:
            raise ValueError(f"--verify-prompt: expected one of {', '.join(VERIFY_PROMPTS)}, got {verify_prompt!r}")
        self.client = connect(url, http, api_key, wait_ready_s)
        card = self.client.model_card() if model is None else {"id": model}
        self.model = str(card["id"])
        self.name = f"self-verify:{self.model}"
        self.template = template or ChatTemplate.resolve("chatml")
        self.top_logprobs = int(top_logprobs)
        if prompts_per_request is None:
            prompts_per_request = 32 if card.get("owned_by") == "vllm" else 1
        self.prompts_per_request = max(1, int(prompts_per_request))
        self.batch_error: str | None = None  # why answers to several questions could not be read, if so
        self.window = StepWindow()
        self.verify_prompt, self.system = verify_prompt, system

    def prompt(self, problem: str, steps: Sequence[str], first: int = 1) -> str:
        if self.verify_prompt == "continued":
            # the conversation step_prompt renders, with the steps as the assistant's turn: for templates
            # that open an assistant turn with the generation prompt (chatml, llama3) this starts with
            # the step prompt of the step after these, byte for byte
            return self.template.render([{"role": "system", "content": self.system}, {"role": "user", "content": problem},
                                         {"role": "assistant", "content": "".join(s + STEP_SEPARATOR for s in steps)},
                                         {"role": "user", "content": CONTINUED_QUESTION}])
        listed = "\n\n".join(f"Step {first + i}: {s}" for i, s in enumerate(steps))
        q = VERIFY_QUESTION.format(problem=problem, steps=listed, n=first + len(steps) - 1)
        return self.template.render([{"role": "user", "content": q}])

    def _payload(self, prompts: list[str]) -> dict:
        return {"model": self.model, "prompt": prompts[0] if len(prompts) == 1 else prompts, "max_tokens": 1,
                "temperature": 0.0, "logprobs": self.top_logprobs, "add_special_tokens": False}

    def _payloads(self, items) -> list[dict]:
        return [self._payload([self.prompt(p, s)]) for p, s in items]

    async def _aall(self, items: list[Item]) -> list[list[float]]:
        k = self.prompts_per_request
        groups = [list(range(i, min(i + k, len(items)))) for i in range(0, len(items), k)]
        payloads = [self._payload([self.prompt(*items[i]) for i in g]) for g in groups]
        replies = await self.client.areplies("/v1/completions", payloads, [items[g[0]][0] for g in groups])
        out: list = [None] * len(items)
        again: list[int] = []
        for g, reply in zip(groups, replies):
            try:
                values = self._p_yes(reply, len(g))
            except EngineError as exc:
                if len(g) == 1:
                    raise
                self.prompts_per_request, self.batch_error = 1, str(exc)  # one question per request from now on
                again += g
                continue
            for i, v in zip(g, values):
                out[i] = [v]
        if again:
            for i, v in zip(again, await self._aall([items[i] for i in again])):
                out[i] = v
        return out

    async def _aeach(self, items: list[Item]) -> list:
        got = await self.client.areplies("/v1/completions", self._payloads(items), [p for p, _ in items], context_errors=True)
        return [r if isinstance(r, ContextLengthError) else self._p_yes(r, 1) for r in got]

    async def ascore(self, items: Sequence[Item]) -> list[list[float | None]]:
        """Every step's score, each asked as the newest step of its prefix."""
        flat = [(p, list(s[: i + 1])) for p, s in items for i in range(len(s))]
        scores = await self.ascore_last(flat)
        out, i = [], 0
        for _, s in items:
            out.append(scores[i : i + len(s)])
            i += len(s)
        return out

    def score(self, items: Sequence[Item]) -> list[list[float | None]]:
        """:meth:`ascore`, run to its end."""
        return run_sync(self.ascore(items)) if items else []

    def _p_yes(self, reply, n: int) -> list[float]:
        """P(yes) of each of the ``n`` questions of a request, in order."""
        where = self.client.url("/v1/completions", reply.url)
        answer = reply.data
        try:
            if isinstance(answer, list):  # llama-server: one completion object per prompt, in prompt order
                choices = [a["choices"][0] for a in answer]
            else:
                choices = answer["choices"]
                if n > 1:
                    choices = sorted(choices, key=lambda c: c["index"])
            if not isinstance(choices, list) or len(choices) != n or (n == 1 and isinstance(answer, list)):
                raise ValueError(f"{n} answers expected")
            tops = [self._top(c) for c in choices]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise EngineError(where, f"unexpected answer: {str(answer)[:300]}") from None
        return [self._yes_share(top, where) for top in tops]

    @staticmethod
    def _top(choice: dict) -> list[tuple[str, object, str]]:
        """(token, logprob, field name) of the first token's top alternatives."""
        lp = choice.get("logprobs") or {}
        if lp.get("content") and not lp.get("top_logprobs"):  # llama-server: {"content": [{..., top_logprobs}]}
            top = lp["content"][0].get("top_logprobs") or []
            return [(str(d["token"]), d["logprob"], f"logprobs.content[0].top_logprobs[{j}].logprob")
                    for j, d in enumerate(top)]
        top = (lp.get("top_logprobs") or [{}])[0] or {}
        if isinstance(top, list):  # chat-style [{"token":..., "logprob":...}]
            return [(str(d["token"]), d["logprob"], f"logprobs.top_logprobs[0][{j}].logprob")
                    for j, d in enumerate(top)]
        return [(str(k), v, f"logprobs.top_logprobs[0][{str(k)!r}]") for k, v in top.items()]

    @staticmethod
    def _yes_share(top: list[tuple[str, object, str]], where: str) -> float:
        # a logprob is <= 0; vLLM sends -9999.0 for -inf (llama-server the lowest float)
        lps = [(k, check_number(where, name, v, hi=1e-3)) for k, v, name in top]
        yes = sum(math.exp(v) for k, v in lps if k.strip().lower() == "yes")
        no = sum(math.exp(v) for k, v in lps if k.strip().lower() == "no")
        return yes / (yes + no) if yes + no > 0 else 0.5
