"""The text format of a conversation: the thinking sits between <think> and </think>, the answer after.

    <|user|>What is 2+3?<|end|><|assistant|><think>
    2+3=5
    </think>5<|end|>

`render_prompt` writes what the model is given (ending in `<think>\\n`, so it always starts thinking),
`render_completion` what it should write. `parse_completion` never raises: malformed model output
(no closing tag, stray tags, empty text) gives an empty answer rather than an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
SPECIAL_TOKENS = [USER, ASSISTANT, END, THINK_OPEN, THINK_CLOSE, "<|pad|>"]

# The Jinja chat template saved with the tokenizer, so `apply_chat_template` gives the same text.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}<|end|>"
    "{% elif m['role'] == 'assistant' %}<|assistant|>"
    "{% if m.get('reasoning_content') %}<think>\n{{ m['reasoning_content'] }}\n</think>{% endif %}"
    "{{ m['content'] }}<|end|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}"
)


def render_prompt(prompt: str) -> str:
    """The text the model is conditioned on for one user question."""
    return f"{USER}{prompt}{END}{ASSISTANT}{THINK_OPEN}\n"


def render_completion(thinking: str, answer: str) -> str:
    """What the model should write after `render_prompt`: its thinking, the closing tag, the answer."""
    return f"{thinking.strip()}\n{THINK_CLOSE}{answer.strip()}{END}"


def render_example(prompt: str, thinking: str, answer: str) -> str:
    return render_prompt(prompt) + render_completion(thinking, answer)


@dataclass(frozen=True)
class ParsedCompletion:
    thinking: str
    answer: str
    closed_thinking: bool  # the model wrote </think>; False means it never got to an answer


def parse_completion(text: str) -> ParsedCompletion:
    """Split model output into thinking and answer. Total: any string in, never an exception."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text.split(END, 1)[0]
    if text.lstrip().startswith(THINK_OPEN):
        text = text.lstrip()[len(THINK_OPEN) :]
    if THINK_CLOSE not in text:
        return ParsedCompletion(thinking=text.strip(), answer="", closed_thinking=False)
    thinking, answer = text.split(THINK_CLOSE, 1)
    # A second <think> block after the answer is noise: keep the answer before it.
    answer = answer.split(THINK_OPEN, 1)[0]
    return ParsedCompletion(thinking=thinking.strip(), answer=answer.strip(), closed_thinking=True)
