"""The widget's conversation in real JupyterLab and Chromium: Markdown and math, code
blocks inserted as cells, mentions and the unread badge, notifications, typing, edit and
delete (the author's, a refused one, a moderator's), a late joiner and a muted user.

This module's ``lab`` replaces the session's: a JupyterLab whose topic permissions make
``@teachers`` (grace) moderators. The test users: ada (the author), alan (another reader),
grace (the moderator). Each page is a browser context of its own (``X-Test-User``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import SCREENSHOTS, Lab, OpenNotebook
from .test_browser import (
    expect,
    feed,
    loss_curve_png,
    run_cell,
    say,
    show_widget,
    wait_until,
    widget_cell,
)

RULES = [{"topic": "*", "join": "*", "send": "*", "moderate": "@teachers"}]

MARKDOWN = (
    "**bold**, *italic* and ~~gone~~\n\n"
    "| name | loss |\n| --- | ---: |\n| run 42 | 0.016 |\n\n"
    "```python\nloss = train(epochs=50)\nprint(loss)\n```\n\n"
    "Euler: $e^{i\\pi}+1=0$"
)
CODE = "loss = train(epochs=50)\nprint(loss)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = Lab(tmp_path_factory.mktemp("lab-conversation"))
    server.configure({"ChannelsApp": {"permissions": RULES}}).start()
    try:
        yield server
    finally:
        server.stop()


def message(widget: Any, text: str) -> Any:
    """The feed item holding ``text``."""
    return widget.locator(".jc-msg", has_text=text)


def act(item: Any, control: str) -> None:
    """Click one of a message's controls (shown while the pointer is over it)."""
    item.hover()
    item.locator(f".jc-actions .{control}").click()


def offset_of(lab: Lab, topic: str, text: str) -> int:
    for stored in lab.messages(topic):
        if stored["subject"] == "text" and stored["payload"].get("text") == text:
            return int(stored["offset"])
    raise AssertionError(f"{text!r} is not stored in {topic}")


def hide(page: Any) -> None:
    """The page as the browser reports a tab in the background: ``visibilityState``
    "hidden" and a ``visibilitychange`` event (Chromium keeps headless pages visible)."""
    page.evaluate(
        """() => {
            const hidden = (value) => ({configurable: true, get: () => value});
            Object.defineProperty(document, "visibilityState", hidden("hidden"));
            Object.defineProperty(document, "hidden", hidden(true));
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )


def show(page: Any) -> None:
    page.evaluate(
        """() => {
            delete document.visibilityState;
            delete document.hidden;
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )


RECORD_NOTIFICATIONS = """() => {
    window.__notifications = [];
    const Real = window.Notification;
    window.Notification = class extends Real {
        constructor(title, options) {
            window.__notifications.push({title, body: options && options.body});
            super(title, options);
        }
    };
}"""


def test_markdown_tables_code_and_math_render_and_code_goes_into_a_new_unrun_cell(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "conv:markdown"
    page = open_notebook(widget_cell(topic), "x = 1")
    widget = show_widget(page)
    lab.post(topic, "text", {"text": MARKDOWN}, user="alan")

    text = message(widget, "bold").locator(".jc-text")
    expect(text.locator("strong")).to_have_text("bold")
    expect(text.locator("em")).to_have_text("italic")
    expect(text.locator("s, del")).to_have_text("gone")
    expect(text.locator("table th")).to_have_text(["name", "loss"])
    expect(text.locator("table td")).to_have_text(["run 42", "0.016"])
    expect(text.locator("pre.jc-codeblock")).to_have_attribute("data-lang", "python")
    expect(text.locator("pre.jc-codeblock code")).to_have_text(CODE + "\n")
    math = text.locator("math")
    expect(math).to_have_count(1)
    expect(math.locator("annotation")).to_have_text("e^{i\\pi}+1=0")
    expect(math.locator("mi").first).to_have_text("e")
    assert "$" not in text.inner_text()

    # "Insert as cell": a new code cell at the end, exactly the code, not run.
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(2)
    text.locator(".jc-insert").click()
    expect(cells).to_have_count(3)
    new = cells.nth(2)
    expect(new).to_have_class(re.compile(r"\bjp-CodeCell\b"))
    expect(new.locator(".jp-InputArea-editor .cm-line")).to_have_text(CODE.split("\n"))
    expect(new.locator(".jp-InputPrompt")).to_have_text("[ ]:")
    expect(new.locator(".jp-OutputArea-output")).to_have_count(0)
    expect(page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt")).to_have_text(
        "[ ]:"
    )


def test_mentions_unread_notifications_and_typing(lab: Lab, open_notebook: OpenNotebook) -> None:
    topic = "conv:mentions"
    ada = open_notebook(widget_cell(topic), user="ada")
    ada.context.grant_permissions(["notifications"], origin=lab.url.rstrip("/"))
    ada_frames: list[str] = []
    ada.on("websocket", lambda ws: ws.on("framereceived", lambda f: ada_frames.append(str(f))))
    alan = open_notebook(widget_cell(topic), user="alan")
    at_ada, at_alan = show_widget(ada), show_widget(alan)
    expect(at_ada.locator(".jc-count")).to_have_text("2 here")
    ada.evaluate(RECORD_NOTIFICATIONS)
    # Permission was granted before: nothing to ask.
    expect(at_ada.locator(".jc-notify")).to_be_hidden()
    # Alan's page never asked on load (a headless browser would have denied it); his
    # click on "Notify me" asks, and once allowed the control goes.
    expect(at_alan.locator(".jc-notify")).to_be_visible()
    assert alan.evaluate("Notification.permission") == "default"
    alan.context.grant_permissions(["notifications"], origin=lab.url.rstrip("/"))
    alan.bring_to_front()
    at_alan.locator(".jc-notify").click()
    expect(at_alan.locator(".jc-notify")).to_be_hidden()

    # Alan mentions Ada, picking her from the suggestions.
    alan.bring_to_front()
    box = at_alan.locator(".jc-input")
    box.click()
    box.press_sequentially("look at this @lov")
    options = at_alan.locator(".jc-suggest [role=option]")
    expect(options).to_have_count(1)
    expect(options).to_have_attribute("data-user", "ada")
    expect(options).to_have_attribute("aria-selected", "true")
    box.press("Enter")
    expect(box).to_have_value("look at this @ada ")
    expect(at_alan.locator(".jc-suggest")).to_be_hidden()

    # Ada does not look (her page is hidden): the mention counts and notifies.
    hide(ada)
    box.press("Enter")
    expect(box).to_have_value("")
    mention = message(at_ada, "look at this")
    expect(mention.locator(".jc-mention-me")).to_have_text("@ada")
    expect(mention).to_have_class(re.compile(r"\bjc-mentions-me\b"))
    expect(at_ada.locator(".jc-unread")).to_have_text("1 new, 1 mention")
    expect(at_ada).to_have_attribute("data-mentions", "1")
    wait_until(lambda: ada.evaluate("window.__notifications.length") == 1)
    assert ada.evaluate("window.__notifications[0]") == {
        "title": f"Alan Turing mentioned you in {topic}",
        "body": "look at this @ada",
    }
    # In Alan's own feed the mention is no mention of him.
    expect(message(at_alan, "look at this").locator(".jc-mention")).to_have_text("@ada")
    expect(at_alan.locator(".jc-mention-me")).to_have_count(0)

    # Ada looks again: the badge clears.
    show(ada)
    ada.bring_to_front()
    expect(at_ada.locator(".jc-unread")).to_be_hidden()

    # Ada types: Alan sees it, Ada never sees her own, and it goes 5 s after the last.
    seen_before = len(ada_frames)
    ada_box = at_ada.locator(".jc-input")
    ada_box.click()
    ada_box.press_sequentially("I am writing")
    expect(at_alan.locator(".jc-typing")).to_have_text("Ada Lovelace is typing")
    wait_until(lambda: any('"typing"' in frame for frame in ada_frames[seen_before:]))
    expect(at_ada.locator(".jc-typing")).to_have_text("")
    expect(at_alan.locator(".jc-typing")).to_have_text("")
    # Sending the message ends it at once.
    ada_box.press_sequentially(" more")
    expect(at_alan.locator(".jc-typing")).to_have_text("Ada Lovelace is typing")
    ada_box.press("Enter")
    expect(message(at_alan, "I am writing more")).to_have_count(1)
    expect(at_alan.locator(".jc-typing")).to_have_text("")


def test_edit_delete_moderation_late_joiners_and_mutes(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "conv:edits"
    ada = open_notebook(widget_cell(topic), widget_cell(topic), user="ada")
    alan = open_notebook(widget_cell(topic), user="alan")
    at_ada, at_alan = show_widget(ada), show_widget(alan)
    for text in ("helo wrold", "a second thought", "keep this", "a moderator removes this"):
        say(at_ada, text)
    expect(feed(at_alan)).to_have_count(4)

    # Ada fixes her typo in place; Alan sees the new text, marked edited.
    act(message(at_ada, "helo wrold"), "jc-edit")
    editor = at_ada.locator(".jc-edit-input")
    expect(editor).to_have_value("helo wrold")
    editor.fill("hello world")
    editor.press("Enter")
    fixed = message(at_alan, "hello world")
    expect(fixed.locator(".jc-edited")).to_have_text("edited")
    expect(message(at_ada, "hello world").locator(".jc-edited")).to_have_text("edited")
    expect(message(at_alan, "helo wrold")).to_have_count(0)

    # Ada deletes her second message, after confirming.
    act(message(at_ada, "a second thought"), "jc-delete")
    at_ada.locator(".jc-confirm-yes").click()
    expect(at_alan.locator(".jc-deleted")).to_have_text(["message deleted"])
    expect(message(at_alan, "a second thought")).to_have_count(0)

    # Alan may not edit Ada's message: the server refuses, his widget says so.
    at_alan.page.bring_to_front()
    act(message(at_alan, "keep this"), "jc-edit")
    at_alan.locator(".jc-edit-input").fill("alan was here")
    at_alan.locator(".jc-save").click()
    expect(at_alan.locator(".jc-notice")).to_contain_text("not edited")
    at_alan.locator(".jc-cancel").click()
    expect(feed(at_ada)).to_have_text(["hello world", "keep this", "a moderator removes this"])

    # Grace moderates: her delete of Ada's message is accepted.
    lab.post(
        topic, "delete", {"offset": offset_of(lab, topic, "a moderator removes this")}, "grace"
    )
    expect(at_alan.locator(".jc-deleted")).to_have_count(2)
    expect(at_ada.locator(".jc-deleted")).to_have_count(2)

    # A late joiner (a second widget on Ada's page) sees the final state from history.
    run_cell(ada, 1)
    late = ada.locator(".jc-widget").nth(1)
    expect(late).to_have_attribute("data-state", "connected")
    expect(feed(late)).to_have_text(["hello world", "keep this"])
    expect(late.locator(".jc-deleted")).to_have_count(2)
    expect(late.locator(".jc-edited")).to_have_count(1)
    expect(
        late.locator('.jc-msg[data-subject="edit"], .jc-msg[data-subject="delete"]')
    ).to_have_count(0)

    # Grace mutes Alan for a few seconds: refused until the mute ends.
    lab.post(topic, "mute", {"user": "alan", "seconds": 8}, "grace")
    expect(at_alan.locator(".jc-system")).to_have_text("alan was muted for 8 s by Grace Hopper")
    at_alan.page.bring_to_front()
    box = at_alan.locator(".jc-input")
    notice = at_alan.locator(".jc-notice")
    box.fill("can I speak?")
    box.press("Enter")
    expect(notice).to_contain_text("not sent")
    expect(box).to_have_value("can I speak?")
    assert "can I speak?" not in stored_texts(lab, topic)

    # Tried again until it goes: refused each time until the mute ends, then sent once.
    while "can I speak?" not in stored_texts(lab, topic):
        expect(box).to_have_value("can I speak?")
        box.press("Enter")
        wait_until(lambda: notice.is_visible() or "can I speak?" in stored_texts(lab, topic), 30)
    expect(feed(at_ada).last).to_have_text("can I speak?")
    expect(box).to_have_value("")
    assert stored_texts(lab, topic).count("can I speak?") == 1


def stored_texts(lab: Lab, topic: str) -> list[str]:
    return [m["payload"].get("text") for m in lab.messages(topic) if m["subject"] == "text"]


def test_the_feed_groups_pages_back_sticks_to_the_bottom_and_collapses_long_messages(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "conv:feed"
    for n in range(1, 71):
        lab.post(topic, "text", {"text": f"message {n}"}, user="alan")
    page = open_notebook(widget_cell(topic))
    widget = show_widget(page)
    items = widget.locator(".jc-msg")
    expect(feed(widget)).to_have_count(50)
    expect(feed(widget).first).to_have_text("message 21")
    # One author within a minute: one group, one day separator.
    first = items.first
    expect(widget.locator(".jc-day")).to_have_text(["Today"])
    after_day = widget.locator(".jc-feed > .jc-day + .jc-msg")
    assert after_day.first.get_attribute("data-offset") == first.get_attribute("data-offset")
    expect(first).not_to_have_class(re.compile(r"\bjc-continued\b"))
    assert widget.locator(".jc-msg.jc-continued").count() >= 40
    assert widget.locator(".jc-day").count() == 1

    # "Load earlier" pages back to the first message, then goes.
    widget.locator(".jc-earlier").click()
    expect(feed(widget)).to_have_count(70)
    expect(feed(widget).first).to_have_text("message 1")
    expect(widget.locator(".jc-earlier")).to_be_hidden()
    expect(widget.locator(".jc-day")).to_have_count(1)

    # Scrolled up, a new message shows the pill instead of moving the feed.
    scroller = widget.locator(".jc-feed")
    scroller.evaluate("el => { el.scrollTop = 0; }")
    lab.post(topic, "text", {"text": "while you read"}, user="alan")
    pill = widget.locator(".jc-pill")
    expect(pill).to_be_visible()
    assert scroller.evaluate("el => el.scrollTop") == 0
    pill.click()
    expect(pill).to_be_hidden()
    page.wait_for_function(
        "el => el.scrollHeight - el.scrollTop - el.clientHeight < 24", arg=scroller.element_handle()
    )

    # A long message is collapsed; "Show more" opens it.
    long = "\n".join(f"line {n}" for n in range(1, 41))
    lab.post(topic, "text", {"text": long}, user="alan")
    last = items.last
    more = last.locator(".jc-more")
    expect(more).to_have_text("Show more")
    expect(last.locator(".jc-text")).to_have_class(re.compile(r"\bjc-collapsed\b"))
    more.click()
    expect(more).to_have_attribute("aria-expanded", "true")
    expect(last.locator(".jc-text")).not_to_have_class(re.compile(r"\bjc-collapsed\b"))

    # Shift+Enter is a new line, Enter sends; the box grows with its lines.
    box = widget.locator(".jc-input")
    box.click()
    height = box.evaluate("el => el.offsetHeight")
    box.press_sequentially("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")
    assert box.evaluate("el => el.offsetHeight") > height
    box.press("Enter")
    expect(box).to_have_value("")
    wait_until(lambda: "line one\nline two" in stored_texts(lab, topic))

    # The feed is a labelled log; Up and Down move between its messages.
    expect(scroller).to_have_attribute("role", "log")
    expect(scroller).to_have_attribute("aria-live", "polite")
    expect(scroller).to_have_attribute("aria-label", f"Messages in {topic}")
    scroller.focus()
    page.keyboard.press("End")
    focused = "() => document.activeElement.querySelector('.jc-text')?.textContent.trim()"
    wait_until(lambda: page.evaluate(focused) == "line one\nline two")
    page.keyboard.press("ArrowUp")
    wait_until(lambda: (page.evaluate(focused) or "").startswith("line 1\nline 2"))


def test_screenshots_of_a_conversation_in_the_light_and_dark_themes(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    """docs/widget.png and docs/widget-dark.png are these (build/screenshots/)."""
    topic = "demo:lobby"
    lab.post(
        topic, "text", {"text": "Has anyone tried the new learning-rate **schedule**?"}, "grace"
    )
    ada = open_notebook(widget_cell(topic), user="ada")
    grace = open_notebook(widget_cell(topic), user="grace")
    widget = show_widget(ada)
    at_grace = show_widget(grace)
    say(
        widget,
        "Trying it now, with warmup:\n\n```python\nschedule = cosine(lr=3e-4, warmup=500)\n```",
    )
    lab.post(
        topic,
        "cell",
        {
            "source": "loss = train(schedule)\nplot(loss)",
            "language": "python",
            "execution_count": 7,
            "notebook": "training.ipynb",
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "epoch 50: loss 0.016\n"},
                {
                    "output_type": "display_data",
                    "data": {"image/png": loss_curve_png(), "text/plain": "<Figure>"},
                    "metadata": {},
                },
            ],
        },
        user="ada",
    )
    table = "| run | loss |\n| --- | ---: |\n| 41 | 0.021 |\n| 42 | 0.016 |\n\n"
    said = table + "@ada nice, that is $\\Delta\\mathcal{L} \\approx -24\\%$ in 50 epcohs"
    typo = lab.post(topic, "text", {"text": said}, "alan")
    fixed = said.replace("epcohs", "epochs")
    lab.post(topic, "edit", {"offset": typo, "text": fixed}, "alan")
    expect(widget.locator(".jc-edited")).to_have_count(1)
    expect(widget.locator(".jc-mention-me")).to_have_text("@ada")
    expect(widget.locator(".jc-image")).to_have_count(1)
    expect(widget.locator(".jc-count")).to_have_text("2 here")
    ada.wait_for_function("() => document.querySelector('.jc-image').complete")
    # The whole conversation in the picture, not only the feed's last 320 px.
    widget.locator(".jc-feed").evaluate("el => { el.style.maxHeight = 'none'; }")

    def grace_types() -> None:
        grace.bring_to_front()
        at_grace.locator(".jc-input").click()
        at_grace.locator(".jc-input").press_sequentially("Merging")
        ada.bring_to_front()
        expect(widget.locator(".jc-typing")).to_have_text("Grace Hopper is typing")
        ada.mouse.move(0, 0)

    grace_types()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    widget.screenshot(path=str(SCREENSHOTS / "conversation-light.png"))
    light = widget.evaluate("el => getComputedStyle(el).backgroundColor")

    ada.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    ada.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    ada.locator(".lm-Menu").get_by_text("JupyterLab Dark", exact=True).click()
    expect(ada.locator("body")).to_have_attribute("data-jp-theme-light", "false")
    expect(ada.locator("#jupyterlab-splash")).to_have_count(0)
    lab.write_setting("apputils-extension", "themes", theme="JupyterLab Light")  # for later pages
    assert widget.evaluate("el => getComputedStyle(el).backgroundColor") != light
    at_grace.locator(".jc-input").fill("")
    grace_types()
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(SCREENSHOTS / "conversation-dark.png"))
