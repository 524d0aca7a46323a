"""What a test-time strategy can be asked: a task `Problem` or any chat `Question`.

A `Problem` brings its task's answer key (votes) and verifier (scored after choosing). A `Question`
is any request, such as a chat message or a server call: its prompt is rendered by the model's own
chat template, and samples vote by their normalised answer text ("73", "73.0" and " 73 " agree;
numbers canonical) unless it brings its own key function. It has no verifier, so `correct` is False
and the oracle ranker scores nothing; a learned verifier or reward model can still rank it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ponder.engine import Rollout
from ponder.evals import score_rollout
from ponder.tasks import Problem, get_task
from ponder.tasks.answers import answer_key
from ponder.ttc.answers import sample_key


def text_key(rollout: Rollout) -> str:
    """A chat answer's voting key: the normalised answer text; "" if it never got to an answer."""
    parsed = rollout.parsed
    return answer_key(parsed.answer) if parsed.closed_thinking else ""


@dataclass(frozen=True)
class Question:
    """A chat request as a strategy sees it: messages (or one user message), a thinking switch, a key."""

    prompt: str | tuple[dict, ...]  # a user message, or the whole conversation
    key: Callable[[Rollout], str] = field(default=text_key, compare=False)
    thinking: bool = True  # passed to templates that take `enable_thinking` (Qwen3)

    def messages(self) -> list[dict]:
        if isinstance(self.prompt, str):
            return [{"role": "user", "content": self.prompt}]
        return [dict(m) for m in self.prompt]


def prompt_ids(engine, item: Problem | Question) -> list[int]:
    if isinstance(item, Problem):
        return engine.format.prompt(item.prompt)
    return engine.format.render(item.messages(), thinking=item.thinking)


def key_of(item: Problem | Question, rollout: Rollout) -> str:
    if isinstance(item, Problem):
        return sample_key(get_task(item.task), item, rollout)
    return item.key(rollout)


def score_of(item: Problem | Question, rollout: Rollout) -> float:
    """The task verifier's score; 0 for a question (no verifier: nothing is known to be right)."""
    return score_rollout(item, rollout) if isinstance(item, Problem) else 0.0
