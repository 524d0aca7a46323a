"""Search over the shipped made-up world finds each lookup question's document; a user's own corpus
works; a missing or empty corpus is a plain error; and the lookup task's traces use the tool."""

from __future__ import annotations

import json

import pytest

from ponder.tasks.lookup import LookupTask
from ponder.tools import TOOL_CALL_OPEN, TOOL_RESPONSE_OPEN, SearchTool, ToolConfig, run_tool_cli
from ponder.tools.collection import SHIPPED, documents, load
from ponder.tools.search import index_for, read_corpus


def test_shipped_collection_is_what_the_generator_writes():
    shipped = load(SHIPPED)
    assert shipped == json.loads(json.dumps(documents()))  # regenerate: python -m ponder.tools.collection
    assert 1000 <= len(shipped) <= 2000  # big enough that lookups cannot be learned by heart
    assert len({d["id"] for d in shipped}) == len(shipped)


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_the_question_finds_its_document_first(difficulty):
    task, index = LookupTask(), index_for()
    problems = [task.problem("eval", i, difficulty) for i in range(40)]
    hits = sum(index.search(p.prompt, 1)[0][0].id == p.meta["doc_id"] for p in problems)
    assert hits >= 0.9 * len(problems)


def test_tool_returns_top_k_titles_and_text():
    town = next(doc for doc in load(SHIPPED) if doc["facts"]["kind"] == "town")
    obs = SearchTool(ToolConfig(top_k=2)).run({"query": f"{town['title']} town"})
    assert obs.ok and obs.text.startswith(f"[1] {town['title']}\n{town['title']} is a town")
    assert "[2] " in obs.text and "[3] " not in obs.text
    assert obs.metadata["ids"][0] == town["id"]


def test_no_match_and_empty_query():
    tool = SearchTool()
    assert tool.run({"query": "zzzz qqqq"}).text == "No documents match 'zzzz qqqq'."
    assert tool.run({"query": "  "}).status == "error"


def test_a_folder_of_text_files_is_a_corpus(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "kettle.md").write_text("# The Kettle Protocol\nBoil water at 97 degrees.\n")
    (tmp_path / "garden.txt").write_text("Tomatoes need sun and water every morning.\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00kettle")
    assert [d.id for d in read_corpus(tmp_path)] == ["garden.txt", "notes/kettle.md"]
    obs = SearchTool(ToolConfig(corpus=str(tmp_path), top_k=1)).run({"query": "kettle protocol"})
    assert obs.text.startswith("[1] The Kettle Protocol\n")


def test_a_jsonl_corpus_and_its_errors(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"title": "Otters", "text": "Otters hold hands while sleeping."}\n\n{"text": "Cats nap."}\n')
    obs = run_tool_cli("search", "otters sleeping", ToolConfig(corpus=str(path)))
    assert obs.ok and obs.text.startswith("[1] Otters")
    path.write_text('{"title": "no text"}\n')
    assert 'needs a "text" string' in SearchTool(ToolConfig(corpus=str(path))).run({"query": "x"}).text


@pytest.mark.parametrize("make", ["missing", "empty_dir", "empty_file", "wrong_type"])
def test_missing_or_empty_corpus_is_a_clear_error(tmp_path, make):
    corpus = {
        "missing": tmp_path / "nope.jsonl",
        "empty_dir": tmp_path,
        "empty_file": tmp_path / "empty.jsonl",
        "wrong_type": tmp_path / "docs.csv",
    }[make]
    if make in ("empty_file", "wrong_type"):
        corpus.write_text("" if make == "empty_file" else "a,b\n")
    obs = SearchTool(ToolConfig(corpus=str(corpus))).run({"query": "anything"})
    assert obs.status == "error" and str(corpus) in obs.text
    assert "set corpus to a .jsonl file" in obs.text


def test_lookup_answers_and_traces():
    task = LookupTask()
    for difficulty in task.difficulties:
        problem = task.problem("train", 0, difficulty)
        trace = task.trace(problem, task.trace_rng(problem))
        assert trace.count(TOOL_CALL_OPEN) == len(problem.meta["steps"]) == trace.count(TOOL_RESPONSE_OPEN)
        assert trace.splitlines()[-1] == problem.answer
        assert task.check(problem, problem.answer) and not task.check(problem, "I don't know")
        wrong = task.trace(problem, task.trace_rng(problem), mistake=True)
        assert "wait, I misread that, let me recheck" in wrong and wrong.splitlines()[-1] == problem.answer


def test_lookup_accepts_reasonable_spellings_and_keys_ignore_the_reference():
    task = LookupTask()
    number = next(p for p in (task.problem("eval", i, 1) for i in range(50)) if p.meta["answer_kind"] == "number")
    assert task.check(number, f"The answer is {number.answer}.") and task.check(number, f"{number.answer} AD")
    age = task.problem("eval", 0, 5)
    assert task.check(age, f"{age.answer} years")
    person = next(p for p in (task.problem("eval", i, 3) for i in range(200)) if p.meta["answer_kind"] == "person")
    surname = person.answer.split()[-1]
    assert task.check(person, surname) and task.check(person, person.answer.upper())
    assert task.answer_key(person, surname) == task.answer_key(person, person.answer)
