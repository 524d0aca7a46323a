"""The chat format: parsing is total, rendering round-trips, the saved chat template agrees."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ponder.format import (
    END,
    SPECIAL_TOKENS,
    THINK_CLOSE,
    THINK_OPEN,
    parse_completion,
    render_completion,
    render_prompt,
)

pieces = st.sampled_from([*SPECIAL_TOKENS, "\n", " ", "2+3=5", "wait", "<", ">", "/", "think"])
tag_soup = st.lists(pieces, max_size=12).map("".join)
plain = st.text().filter(lambda s: not any(t in s for t in SPECIAL_TOKENS))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_completion_never_raises_on_any_text(text):
    parsed = parse_completion(text)
    assert isinstance(parsed.thinking, str) and isinstance(parsed.answer, str)


@settings(max_examples=200, deadline=None)
@given(tag_soup)
def test_parse_completion_never_raises_on_texts_built_from_tags(text):
    parsed = parse_completion(text)
    assert END not in parsed.answer
    if not parsed.closed_thinking:
        assert parsed.answer == ""


def test_parse_completion_accepts_non_strings():
    assert parse_completion(None).answer == ""
    assert parse_completion(42).thinking == "42"


@settings(max_examples=200, deadline=None)
@given(plain, plain)
def test_render_then_parse_round_trips(thinking, answer):
    assume(not thinking.lstrip().startswith(THINK_OPEN))
    parsed = parse_completion(render_completion(thinking, answer))
    assert parsed.closed_thinking
    assert parsed.thinking == thinking.strip()
    assert parsed.answer == answer.strip()


def test_missing_close_tag_means_no_answer():
    parsed = parse_completion("2+3 is 5, so the answer is 5<|end|>")
    assert parsed.closed_thinking is False
    assert parsed.answer == ""
    assert parsed.thinking == "2+3 is 5, so the answer is 5"


def test_leading_think_tag_and_second_think_block_are_dropped():
    parsed = parse_completion(f"{THINK_OPEN}\nadd\n{THINK_CLOSE}5{THINK_OPEN}more{END}junk")
    assert parsed == parsed.__class__(thinking="add", answer="5", closed_thinking=True)


def test_chat_template_equals_render_prompt(tok):
    for question in ("What is 2+3?", "Count the r's in 'strawberry'.", ""):
        messages = [{"role": "user", "content": question}]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert text == render_prompt(question)
