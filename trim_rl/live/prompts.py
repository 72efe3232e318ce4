"""Prompts for step-by-step generation, built from a model's chat template.

A step prompt is ``template(system, problem) + accepted steps + "\\n\\n"``: the text before the next
step only grows as steps are accepted, so a server's prefix cache (vLLM's automatic prefix caching,
llama.cpp's slot cache) reuses the problem and every accepted step.  Steps are separated by a blank
line; generation stops at the next blank line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from collections.abc import Sequence

from trim_rl.fsutil import read_text_file

STEP_SEPARATOR = "\n\n"
DEFAULT_SYSTEM = ("Please reason step by step, separating the steps with a blank line, "
                  "and put your final answer within \\boxed{}.")
#: ChatML, the chat template of Qwen2.5 and SmolLM2.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
#: Llama 3 instruct.  The prompt carries its own ``<|begin_of_text|>``, which is why the engines send
#: rendered prompts with ``add_special_tokens: false`` (else the server adds a second BOS).
LLAMA3 = ("<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
#: Llama 3.1 / 3.2 / 3.3 instruct (no tools): the system turn always opens with the knowledge-cutoff
#: header of Meta's template, and contents are trimmed as there.
LLAMA31 = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
           "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
           "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] | trim }}{% endif %}<|eot_id|>"
           "{% for m in messages %}{% if m['role'] != 'system' %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
           "\n\n{{ m['content'] | trim }}<|eot_id|>{% endif %}{% endfor %}"
           "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
BUILTIN_TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "llama3.1": LLAMA31}


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template (``messages``, ``add_generation_prompt``), as in a tokenizer config."""

    source: str
    name: str = "custom"

    @classmethod
    def resolve(cls, spec: str | None) -> ChatTemplate:
        """``chatml`` (default), ``llama3``, ``llama3.1``, or the path of a ``.jinja`` file (checked here:
        a template that does not compile, or that reaches for Python internals, is a ValueError naming it)."""
        spec = spec or "chatml"
        if spec in BUILTIN_TEMPLATES:
            return cls(BUILTIN_TEMPLATES[spec], spec)
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"--chat-template {spec!r}: use one of {', '.join(BUILTIN_TEMPLATES)} or an existing "
                             ".jinja file")
        template = cls(read_text_file(path, f"--chat-template {spec}"), path.name)
        template.check(f"--chat-template {spec}")
        return template

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt; a ``jinja2.TemplateError`` (``SecurityError`` among them) where the template fails."""
        return _compiled(self.source).render(messages=messages, add_generation_prompt=add_generation_prompt)

    def check(self, where: str) -> None:
        """Compile the template and render it once on a sample conversation, so that a broken or unsafe
        template is refused at start-up (ValueError naming ``where``) rather than failing requests."""
        import jinja2
        from jinja2.sandbox import SecurityError

        try:
            self.render([{"role": "system", "content": "system"}, {"role": "user", "content": "problem"}])
        except SecurityError as exc:
            raise ValueError(f"{where}: refused, the template reaches for Python internals that the sandbox "
                             f"forbids ({exc})") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"{where}: line {exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise ValueError(f"{where}: the template fails on a sample conversation ({exc})") from None


def _raise_exception(message: str):
    """``raise_exception(msg)``, which Hugging Face chat templates call on a conversation they refuse."""
    import jinja2

    raise jinja2.TemplateError(message)


@lru_cache(maxsize=32)
def _compiled(source: str):
    """A template compiled once, in jinja2's immutable sandbox as transformers renders chat templates: a
    template is code, and outside the sandbox it can reach ``os`` through jinja's globals.  Compiling costs
    about 0.7 ms, rendering a compiled one some 20 us, and every step of every request renders a prompt."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(keep_trailing_newline=True)
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(source)


def step_prompt(template: ChatTemplate, problem: str, steps: Sequence[str], system: str = DEFAULT_SYSTEM) -> str:
    """The prompt whose continuation is the next step of ``problem`` after ``steps``."""
    head = template.render([{"role": "system", "content": system}, {"role": "user", "content": problem}])
    return head + "".join(s + STEP_SEPARATOR for s in steps)


def solution_text(steps: Sequence[str]) -> str:
    """The accepted steps as one solution."""
    return STEP_SEPARATOR.join(steps)


def is_final(text: str) -> bool:
    r"""A step that states the answer (``\boxed{``) ends the solution."""
    return "\\boxed" in text or "\\fbox" in text
