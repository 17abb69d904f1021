"""The job page's "Copy as code" in a real headless Chromium: the Copy button puts the snippet on the
clipboard, and where there is no Clipboard API it selects the snippet for Ctrl-C instead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import TARGET, start_callboard
from tests.servers import Callboard, RedisServer

pytestmark = pytest.mark.browser

#: Would end the <pre> or start a script if the page did not escape it.
HOSTILE = "it's </code></pre><script>window.__pwned = 1</script>"


def noop(*args: Any) -> None:
    pass


@pytest.fixture(scope="module")
def job_url(browser_redis: RedisServer, broker: RedisBroker) -> Iterator[str]:
    """A waiting message (no worker runs it) and the Callboard page that shows it."""
    actor = dramatiq.actor(broker=broker, actor_name="copy_me", queue_name="copies")(noop)
    message = actor.send(HOSTILE, {"n": 1})
    board: Callboard = start_callboard(TARGET, browser_redis)
    rid = message.options["redis_message_id"]
    yield f"{board.url}/jobs/{TARGET}/dramatiq/{quote('dramatiq:copies', safe='')}/{rid}"
    board.stop()


def open_snippet(page: Page, url: str, errors: list[str]) -> str:
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.locator("details.resend summary").click()
    code = page.locator("#resend-code")
    expect(code).to_be_visible()
    text = code.text_content() or ""
    assert f"args=[\n        {HOSTILE!r},\n" in text  # shown as code, not run as markup
    assert page.evaluate("window.__pwned") is None
    return text


def test_copy_button_puts_the_snippet_on_the_clipboard(browser: Browser, job_url: str) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        errors: list[str] = []
        text = open_snippet(page, job_url, errors)
        page.locator("button[data-copy]").click()
        expect(page.locator("[data-copy-status]")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == text
        assert errors == []
    finally:
        context.close()


def test_without_a_clipboard_api_the_snippet_is_selected(browser: Browser, job_url: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script("Object.defineProperty(navigator, 'clipboard', { value: undefined })")
        errors: list[str] = []
        text = open_snippet(page, job_url, errors)
        page.locator("button[data-copy]").click()
        expect(page.locator("[data-copy-status]")).to_have_text("Selected: press Ctrl+C to copy")
        # A selection's text drops the final newline; the code is all there.
        assert page.evaluate("window.getSelection().toString()") == text.rstrip("\n")
        assert errors == []
    finally:
        context.close()
