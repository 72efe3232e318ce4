"""Process reward scorers: ``(problem, steps) -> one score in [0, 1] per step``.

- :class:`VLLMPoolingPRM`: a process reward model served by ``vllm serve`` (Qwen2.5-Math-PRM-7B),
  through the ``/pooling`` endpoint.
- :class:`VLLMInProcessPRM`: the same model in-process through ``LLM.encode`` / ``LLM.reward``.
- :class:`SelfVerifyScorer`: any completions endpoint with logprobs asks itself whether the newest
  step is correct and reads P(yes); runs on a CPU (llama.cpp).

Qwen2.5-Math-PRM input: the steps joined and followed by ``<extra_0>`` in the assistant turn; the
score of a step is the positive-class probability at its separator.

vLLM versions differ in what ``/pooling`` returns for this model, and :func:`step_probabilities`
reads all of them:
- 0.7-0.9 (``--task reward``) pool at the step tag by default: one ``[p_neg, p_pos]`` row per step;
- later versions (``--runner pooling``) may return one row per prompt token (``ALL`` pooling) and
  want ``"task": "token_classify"`` in the request; the rows at the step tag are picked using the
  token ids from ``/tokenize``;
- rows may be logits rather than probabilities (then softmax is applied), or a single positive
  probability per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from trim_rl.live.http import EngineError, HTTPSettings, JSONClient
from trim_rl.live.prompts import ChatTemplate

Item = tuple[str, Sequence[str]]  # (problem, steps)
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TAG = "<extra_0>"
STEP_TAG_ID = 151651  # <extra_0> in the Qwen2.5 vocabulary


class PRMScorer(Protocol):
    name: str

    def score(self, items: Sequence[Item]) -> list[list[float]]: ...

    def score_last(self, items: Sequence[Item]) -> list[float]: ...


class _LastFromAll:
    def score_last(self, items: Sequence[Item]) -> list[float]:
        """Score of the newest step of each item."""
        return [s[-1] for s in self.score(items)]


def _positive(row) -> float:
    """Positive-class probability from a row: [p_neg, p_pos], two logits, or one probability/logit."""
    if isinstance(row, (int, float)):
        v = float(row)
        return v if 0.0 <= v <= 1.0 else 1.0 / (1.0 + math.exp(-v))
    vals = [float(x) for x in row]
    if len(vals) == 1:
        return _positive(vals[0])
    if all(0.0 <= v <= 1.0 for v in vals) and abs(sum(vals) - 1.0) < 1e-2:  # bf16 probabilities: off by up to 2e-3
        return vals[-1]
    m = max(vals)
    ex = [math.exp(v - m) for v in vals]
    return ex[-1] / sum(ex)


def step_probabilities(rows, n_steps: int, token_ids: Sequence[int] | None = None,
                       step_tag_id: int = STEP_TAG_ID) -> list[float] | None:
    """Per-step positive probabilities from a pooling output; None when per-token rows need token ids."""
    if isinstance(rows, dict) and "data" in rows:
        rows = rows["data"]
    rows = list(rows)
    if len(rows) == n_steps:
        return [_positive(r) for r in rows]
    if token_ids is None:
        return None
    at = [i for i, t in enumerate(token_ids) if int(t) == step_tag_id]
    if len(at) != n_steps or len(rows) < len(token_ids):
        raise ValueError(f"pooling output has {len(rows)} rows and the prompt {len(at)} step tags for {n_steps} steps")
    return [_positive(rows[i]) for i in at]


@dataclass
class _QwenPRMPrompt:
    template: ChatTemplate = field(default_factory=lambda: ChatTemplate.resolve("chatml"))
    system: str = QWEN_PRM_SYSTEM
    step_tag: str = STEP_TAG

    def prompt(self, problem: str, steps: Sequence[str]) -> str:
        answer = "".join(s + self.step_tag for s in steps)
        return self.template.render([{"role": "system", "content": self.system}, {"role": "user", "content": problem},
                                     {"role": "assistant", "content": answer}], add_generation_prompt=False)


class VLLMPoolingPRM(_LastFromAll):
    """A PRM behind ``vllm serve`` (``/pooling``); scores every step of each item in one request."""

    TASKS = (None, "token_classify", "reward")

    def __init__(self, url: str, model: str | None = None, http: HTTPSettings | None = None,
                 step_tag_id: int = STEP_TAG_ID, prompt: _QwenPRMPrompt | None = None, api_key: str | None = None):
        self.client = JSONClient(url, http, api_key)
        self.model = model or self.client.model_id()
        self.name = self.model
        self.step_tag_id = int(step_tag_id)
        self.builder = prompt or _QwenPRMPrompt()
        self._task_i = 0

    def _pool(self, prompts: list[str]) -> list:
        while True:
            task = self.TASKS[self._task_i]
            payloads = [{"model": self.model, "input": p, "encoding_format": "float", **({"task": task} if task else {})}
                        for p in prompts]
            try:
                return self.client.post_many("/pooling", payloads)
            except EngineError as exc:  # older/newer servers reject or require "task"
                if exc.status == 400 and "task" in str(exc).lower() and self._task_i + 1 < len(self.TASKS):
                    self._task_i += 1
                    continue
                raise

    def score(self, items: Sequence[Item]) -> list[list[float]]:
        prompts = [self.builder.prompt(p, s) for p, s in items]
        answers = self._pool(prompts)
        out = []
        for (problem, steps), prompt, ans in zip(items, prompts, answers):
            try:
                rows = ans["data"][0]["data"]
            except (KeyError, IndexError, TypeError):
                raise EngineError(self.client.url("/pooling"), f"unexpected answer: {str(ans)[:300]}") from None
            probs = step_probabilities(rows, len(steps), None, self.step_tag_id)
            if probs is None:
                tok = self.client.post("/tokenize", {"model": self.model, "prompt": prompt, "add_special_tokens": False})
                probs = step_probabilities(rows, len(steps), tok.get("tokens"), self.step_tag_id)
            out.append(probs)
        return out


class VLLMInProcessPRM(_LastFromAll):
    """A PRM in-process with vLLM (``LLM.reward`` where it exists, else ``LLM.encode``)."""

    def __init__(self, model: str, step_tag_id: int = STEP_TAG_ID, prompt: _QwenPRMPrompt | None = None, **llm_kwargs):
        from vllm import LLM

        self.name = model
        self.step_tag_id = int(step_tag_id)
        self.builder = prompt or _QwenPRMPrompt()
        try:  # vLLM >= 0.10
            self.llm = LLM(model=model, runner="pooling", **llm_kwargs)
        except TypeError:  # 0.7 - 0.9
            self.llm = LLM(model=model, task="reward", **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def score(self, items: Sequence[Item]) -> list[list[float]]:
        prompts = [self.builder.prompt(p, s) for p, s in items]
        run = getattr(self.llm, "reward", None) or self.llm.encode
        outs = run(prompts, use_tqdm=False)
        res = []
        for (problem, steps), prompt, o in zip(items, prompts, outs):
            rows = o.outputs.data.tolist()
            probs = step_probabilities(rows, len(steps), None, self.step_tag_id)
            if probs is None:
                probs = step_probabilities(rows, len(steps), self.tokenizer.encode(prompt, add_special_tokens=False),
                                           self.step_tag_id)
            res.append(probs)
        return res


VERIFY_QUESTION = ("Here is a math problem and the start of a solution.\n\nProblem:\n{problem}\n\n"
                   "Solution so far:\n{steps}\n\nIs Step {n} correct? Answer yes or no.")


class SelfVerifyScorer:
    """P(yes) that the newest step is correct, from a completions endpoint's top logprobs.

    The question goes to the model's chat template; the answer's first token is read from the top
    ``top_logprobs`` alternatives: score = P(yes) / (P(yes) + P(no)), 0.5 when neither appears.
    """

    def __init__(self, url: str, model: str | None = None, template: ChatTemplate | None = None,
                 http: HTTPSettings | None = None, top_logprobs: int = 10, api_key: str | None = None):
        self.client = JSONClient(url, http, api_key)
        self.model = model or self.client.model_id()
        self.name = f"self-verify:{self.model}"
        self.template = template or ChatTemplate.resolve("chatml")
        self.top_logprobs = int(top_logprobs)

    def prompt(self, problem: str, steps: Sequence[str]) -> str:
        listed = "\n\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps))
        q = VERIFY_QUESTION.format(problem=problem, steps=listed, n=len(steps))
        return self.template.render([{"role": "user", "content": q}])

    def score_last(self, items: Sequence[Item]) -> list[float]:
        payloads = [{"model": self.model, "prompt": self.prompt(p, s), "max_tokens": 1, "temperature": 0.0,
                     "logprobs": self.top_logprobs} for p, s in items]
        return [self._p_yes(a) for a in self.client.post_many("/v1/completions", payloads)]

    def score(self, items: Sequence[Item]) -> list[list[float]]:
        flat = [(p, list(s[: i + 1])) for p, s in items for i in range(len(s))]
        scores = self.score_last(flat)
        out, i = [], 0
        for _, s in items:
            out.append(scores[i : i + len(s)])
            i += len(s)
        return out

    def _p_yes(self, answer: dict) -> float:
        try:
            lp = answer["choices"][0].get("logprobs") or {}
            if lp.get("content") and not lp.get("top_logprobs"):  # llama.cpp's llama-server: {"content": [...]}
                lp = {"top_logprobs": [lp["content"][0].get("top_logprobs")]}
            top = (lp.get("top_logprobs") or [{}])[0] or {}
        except (KeyError, IndexError, TypeError):
            raise EngineError(self.client.url("/v1/completions"), f"unexpected answer: {str(answer)[:300]}") from None
        if isinstance(top, list):  # chat-style [{"token":..., "logprob":...}]
            top = {d["token"]: d["logprob"] for d in top}
        yes = sum(math.exp(v) for k, v in top.items() if k.strip().lower() == "yes")
        no = sum(math.exp(v) for k, v in top.items() if k.strip().lower() == "no")
        return yes / (yes + no) if yes + no > 0 else 0.5
