"""The web chat end to end in a real headless Chromium (Debian's `chromium`, driven by Playwright;
no browser download): a message is sent, the answer streams in, the collapsed "Thought for N
tokens" section holds the summary (and the raw thinking when asked for), and a thumbs-up lands in
SQLite. Where no browser is installed the test is skipped and says how to get one; CI (.ci/run)
installs it first, so there it always runs."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3

import pytest

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli.serve import context_length
from ponder.engine import Engine
from ponder.engine.client import AsyncEngineClient
from ponder.serve.background import BackgroundServer
from ponder.serve.feedback import FeedbackStore
from ponder.serve.serving_common import ServerState

CHROMIUM = os.environ.get("PONDER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium to drive: install Debian's (apt-get install -y chromium) or set PONDER_CHROMIUM to a "
    "Chromium binary; `playwright install` is not used",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engine = Engine(*models.load(base_model_path()))
    store = FeedbackStore(tmp_path_factory.mktemp("web") / "feedback.sqlite")
    state = ServerState(AsyncEngineClient(engine), "ponder-base", context_length(engine.model), store=store)
    with BackgroundServer(state) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def test_a_streamed_answer_its_thinking_section_and_a_thumbs_up_that_lands_in_sqlite(server, page):
    page.goto(server.url)
    sync_api.expect(page.get_by_test_id("model")).to_have_text("ponder-base")
    page.get_by_test_id("effort").select_option("high")
    page.get_by_test_id("show-thinking").check()
    page.get_by_test_id("prompt").fill("Compute 27+56.")
    page.get_by_test_id("send").click()

    turn = page.get_by_test_id("assistant-turn").last
    title = turn.get_by_test_id("thinking-title")
    sync_api.expect(title).to_have_text(re.compile(r"^Thought for \d+ tokens$"))
    sync_api.expect(turn.get_by_test_id("answer")).not_to_be_empty()
    thinking = turn.get_by_test_id("thinking")
    assert thinking.get_attribute("open") is None, "the thinking section starts collapsed"
    title.click()
    summary = turn.get_by_test_id("thinking-summary")
    sync_api.expect(summary).to_be_visible()
    count = re.search(r"\d+", title.inner_text()).group(0)
    assert f"Thought for {count} tokens." in summary.inner_text()
    assert "27" in turn.get_by_test_id("thinking-raw").inner_text(), "the raw thinking, shown on request"

    turn.get_by_test_id("thumbs-up").click()
    sync_api.expect(turn.get_by_test_id("feedback-note")).to_have_text("thanks, saved")
    db = sqlite3.connect(server.state.store.path)
    rows = db.execute(
        "SELECT c.answer, f.rating, f.source FROM feedback f JOIN completions c "
        "ON c.id = f.completion_id AND c.choice = f.completion_choice"
    ).fetchall()
    assert rows == [(turn.get_by_test_id("answer").inner_text(), 1, "web")]
