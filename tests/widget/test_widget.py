"""ChannelWidget's kernel side: ``send``, ``on``, ``messages``, ``members`` on the Python
client, following ``topic``; the endpoint it hands to a page without Jupyter's config;
anywidget imported only when the widget is used."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anywidget
import pytest
import traitlets

from jupyter_channels import ChannelWidget
from jupyter_channels.client.discovery import websocket_url
from jupyter_channels.constants import ENV_TOKEN, ENV_URL

from .conftest import Lab

Factory = Callable[[str], ChannelWidget]


@pytest.fixture
def make_widget(lab: Lab) -> Iterator[Factory]:
    """``make_widget(topic)``: a ChannelWidget whose kernel side talks to ``lab``."""
    made: list[ChannelWidget] = []

    def make(topic: str) -> ChannelWidget:
        widget = ChannelWidget(topic, url=lab.url, token=lab.token)
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.close()


@pytest.fixture
def custom_messages(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What widgets send to their front end as custom messages."""
    sent: list[Any] = []
    monkeypatch.setattr(
        anywidget.AnyWidget,
        "send",
        lambda self, content, buffers=None: sent.append(content),
        raising=False,
    )
    return sent


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.02)


def texts(widget: ChannelWidget) -> list[Any]:
    return [m.payload["text"] for m in widget.messages]  # type: ignore[index,call-overload]


def test_importing_jupyter_channels_does_not_import_anywidget() -> None:
    code = (
        "import sys, jupyter_channels\n"
        "assert 'anywidget' not in sys.modules\n"
        "jupyter_channels.ChannelWidget\n"
        "assert 'anywidget' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_topic_outside_the_protocol_is_refused() -> None:
    with pytest.raises(traitlets.TraitError, match="invalid topic"):
        ChannelWidget("not a topic")
    widget = ChannelWidget("chat:ok")
    with pytest.raises(traitlets.TraitError):
        widget.topic = ""
    assert widget.topic == "chat:ok"


def test_send_stores_a_message_and_returns_its_offset(lab: Lab, make_widget: Factory) -> None:
    widget = make_widget("py:send")
    first = widget.send("text", {"text": "one"})
    second = widget.send("text", {"text": "two"})
    assert second == first + 1
    assert [m["payload"] for m in lab.messages("py:send")][-2:] == [
        {"text": "one"},
        {"text": "two"},
    ]


def test_messages_hold_the_last_50_then_what_arrives(lab: Lab, make_widget: Factory) -> None:
    for n in range(1, 56):
        lab.post("py:history", "text", {"text": n})
    widget = make_widget("py:history")
    assert texts(widget) == list(range(6, 56))
    lab.post("py:history", "text", {"text": 56})
    wait_until(lambda: texts(widget)[-1] == 56)


def test_on_calls_back_and_follows_the_widget_to_a_new_topic(
    lab: Lab, make_widget: Factory
) -> None:
    widget = make_widget("py:first")
    seen: list[tuple[str, Any]] = []

    @widget.on("text")
    def record(message: Any) -> None:
        seen.append((message.topic, message.payload["text"]))

    lab.post("py:first", "text", {"text": "a"})
    wait_until(lambda: ("py:first", "a") in seen)

    widget.topic = "py:second"
    lab.post("py:first", "text", {"text": "b"})  # no longer watched
    lab.post("py:second", "text", {"text": "c"})
    wait_until(lambda: ("py:second", "c") in seen)
    assert seen == [("py:first", "a"), ("py:second", "c")]
    assert widget.send("text", {"text": "d"}) == lab.messages("py:second")[-1]["offset"]


def test_members_show_the_kernel_side_in_the_topic(make_widget: Factory) -> None:
    widget = make_widget("py:members")
    members = widget.members
    assert list(members) == ["ada"]  # the test identity of a token without X-Test-User
    assert [meta["kind"] for meta in members["ada"]] == ["browser"]


def test_widgets_of_a_kernel_share_one_connection_and_closing_one_leaves_only_its_hold(
    make_widget: Factory,
) -> None:
    first, second = make_widget("py:close"), make_widget("py:close")
    first.send("text", {"text": "one"})
    second.send("text", {"text": "two"})
    shared = first._connection()
    assert second._connection() is shared
    assert shared.holders("py:close") == 2
    threads = threading.active_count()

    first.close()
    assert shared.holders("py:close") == 1
    assert second.send("text", {"text": "still here"}) > 0
    second.close()
    assert "py:close" not in shared.topics
    assert shared.state == "connected"  # the kernel's connection stays for later widgets
    assert threading.active_count() == threads


def relay(widget: ChannelWidget, link: str, op: str, seq: int, *frames: dict[str, Any]) -> None:
    """What a page sends its kernel on a relay link."""
    message: dict[str, Any] = {"kind": "relay", "link": link, "op": op, "seq": seq}
    if frames:
        message["texts"] = [json.dumps(frame) for frame in frames]
    widget._on_custom_message(widget, message, [])


def relayed(sent: list[Any], link: str) -> list[dict[str, Any]]:
    """The frames the kernel relayed to the page on ``link``."""
    return [
        json.loads(text)
        for m in sent
        if m.get("kind") == "relay" and m.get("link") == link and m.get("op") == "frames"
        for text in m["texts"]
    ]


def test_the_kernel_relays_a_pages_join_push_and_the_topics_messages(
    lab: Lab, make_widget: Factory, custom_messages: list[Any]
) -> None:
    lab.post("py:relay", "text", {"text": "before"})
    widget = make_widget("py:relay")
    relay(widget, "L1", "open", 1)
    assert {"kind": "relay", "link": "L1", "op": "ack", "seq": 1} in custom_messages
    wait_until(lambda: {"kind": "relay", "link": "L1", "op": "open"} in custom_messages)

    join = {"event": "join", "topic": "py:relay", "ref": "1", "history": 50, "payload": {}}
    relay(widget, "L1", "frames", 2, join)
    wait_until(lambda: any(f.get("ref") == "1" for f in relayed(custom_messages, "L1")))
    reply = next(f for f in relayed(custom_messages, "L1") if f.get("ref") == "1")
    assert reply["payload"]["status"] == "ok"
    assert [m["payload"]["text"] for m in reply["payload"]["response"]["messages"]] == ["before"]
    wait_until(lambda: any(f["event"] == "presence_state" for f in relayed(custom_messages, "L1")))

    push = {"event": "message", "topic": "py:relay", "ref": "2", "subject": "text"}
    relay(widget, "L1", "frames", 3, {**push, "payload": {"text": "from the page"}})
    wait_until(lambda: any(f.get("ref") == "2" for f in relayed(custom_messages, "L1")))
    stored = lab.messages("py:relay")
    assert [m["payload"]["text"] for m in stored] == ["before", "from the page"]
    ack = next(f for f in relayed(custom_messages, "L1") if f.get("ref") == "2")
    assert ack["payload"]["response"]["offset"] == stored[-1]["offset"]

    lab.post("py:relay", "text", {"text": "after"})
    wait_until(
        lambda: any(
            f["event"] == "message" and f["payload"] == {"text": "after"}
            for f in relayed(custom_messages, "L1")
        )
    )
    shared = widget._connection()
    assert shared.holders("py:relay") == 1
    relay(widget, "L1", "close", 4)
    wait_until(lambda: "py:relay" not in shared.topics)


def test_a_page_pushing_to_a_topic_it_did_not_join_gets_not_joined(
    make_widget: Factory, custom_messages: list[Any]
) -> None:
    widget = make_widget("py:relay-nj")
    relay(widget, "L2", "open", 1)
    wait_until(lambda: {"kind": "relay", "link": "L2", "op": "open"} in custom_messages)
    push = {"event": "message", "topic": "py:elsewhere", "ref": "7", "subject": "text"}
    relay(widget, "L2", "frames", 2, {**push, "payload": {"text": "x"}})
    wait_until(lambda: any(f.get("ref") == "7" for f in relayed(custom_messages, "L2")))
    reply = next(f for f in relayed(custom_messages, "L2") if f.get("ref") == "7")
    assert reply["payload"] == {
        "status": "error",
        "response": {"reason": "not_joined", "detail": "not joined to 'py:elsewhere'"},
    }


def test_closing_a_widget_drops_its_pages_links_and_their_topics(
    make_widget: Factory, custom_messages: list[Any]
) -> None:
    widget = make_widget("py:relay-close")
    relay(widget, "L3", "open", 1)
    wait_until(lambda: {"kind": "relay", "link": "L3", "op": "open"} in custom_messages)
    join = {"event": "join", "topic": "py:relay-close", "ref": "1", "payload": {}}
    relay(widget, "L3", "frames", 2, join)
    wait_until(lambda: any(f.get("ref") == "1" for f in relayed(custom_messages, "L3")))
    shared = widget._connection()
    assert shared.links_of(widget) == 1
    widget.close()
    assert shared.links_of(widget) == 0
    wait_until(lambda: "py:relay-close" not in shared.topics)


def test_the_transport_is_auto_direct_or_kernel(make_widget: Factory) -> None:
    widget = make_widget("py:transport")
    assert widget.transport == "auto"
    widget.transport = "kernel"
    with pytest.raises(traitlets.TraitError, match="invalid transport 'websocket'"):
        widget.transport = "websocket"


def test_a_page_without_jupyter_config_gets_the_endpoint_from_the_kernel(
    lab: Lab, make_widget: Factory, custom_messages: list[Any]
) -> None:
    widget = make_widget("py:endpoint")
    widget._on_custom_message(widget, {"kind": "endpoint"}, [])
    assert custom_messages == [
        {"kind": "endpoint", "url": websocket_url(lab.url), "token": lab.token}
    ]


@pytest.fixture
def lab_parent(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process as a kernel ``lab`` started (``JPY_PARENT_PID``, the same runtime
    directory), without the channels environment; returns ``lab``'s runtime file."""
    for name in (ENV_URL, ENV_TOKEN):
        monkeypatch.delenv(name, raising=False)
    assert lab.proc is not None
    runtime = lab.root / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JPY_PARENT_PID", str(lab.proc.pid))
    return runtime / f"jpserver-{lab.proc.pid}.json"


def test_a_page_is_never_handed_the_server_token_of_the_runtime_file(
    lab: Lab, lab_parent: Path, custom_messages: list[Any]
) -> None:
    assert json.loads(lab_parent.read_text())["token"] == lab.token  # what discovery finds
    widget = ChannelWidget("py:no-server-token")

    widget._on_custom_message(widget, {"kind": "endpoint"}, [])

    # The page connects with its own login instead (cookie and XSRF, or none).
    assert custom_messages == [{"kind": "endpoint", "url": websocket_url(lab.url), "token": ""}]
    assert lab.token not in json.dumps(custom_messages)


def test_a_page_is_handed_the_kernel_token_the_server_exported(
    lab: Lab, lab_parent: Path, monkeypatch: pytest.MonkeyPatch, custom_messages: list[Any]
) -> None:
    kernel_token = "kernel-token-for-channels-only"
    monkeypatch.setenv(ENV_URL, websocket_url(lab.url))
    monkeypatch.setenv(ENV_TOKEN, kernel_token)
    widget = ChannelWidget("py:kernel-token")

    widget._on_custom_message(widget, {"kind": "endpoint"}, [])

    assert custom_messages == [
        {"kind": "endpoint", "url": websocket_url(lab.url), "token": kernel_token}
    ]


def test_without_a_server_the_page_is_told_why(
    monkeypatch: pytest.MonkeyPatch, custom_messages: list[Any], tmp_path: Path
) -> None:
    for name in ("JUPYTER_CHANNELS_URL", "JUPYTER_CHANNELS_TOKEN", "JPY_PARENT_PID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no server files either
    widget = ChannelWidget("py:nowhere")
    widget._on_custom_message(widget, {"kind": "endpoint"}, [])
    [answer] = custom_messages
    assert answer["kind"] == "endpoint"
    assert "Jupyter server found" in answer["error"]


def test_send_with_a_dict_is_still_an_ipywidgets_custom_message(
    custom_messages: list[Any],
) -> None:
    widget = ChannelWidget("py:focus")
    widget.focus()  # DOMWidget.focus sends {"do": "focus"} through Widget.send
    assert custom_messages == [{"do": "focus"}]


def test_share_cell_sends_a_cell_with_its_outputs_limited_to_what_is_shared(
    make_widget: Factory,
) -> None:
    widget = make_widget("widget:share")
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": ["two\n", "lines\n"]},
        {"output_type": "execute_result", "execution_count": 3,
         "data": {"text/plain": "42", "text/html": "<b>42</b>"}, "metadata": {}},
        {"output_type": "display_data", "data": {"image/png": "not base64!"}, "metadata": {}},
        {"output_type": "error", "ename": "E", "evalue": "", "traceback": []},
    ]  # fmt: skip

    offset = widget.share_cell(
        "%%share widget:share\nx = 42\nx", execution_count=3, outputs=outputs
    )

    wait_for(lambda: [m.offset for m in widget.messages if m.subject == "cell"] == [offset])
    payload = widget.messages[-1].payload
    assert payload["source"] == "x = 42\nx"
    assert payload["execution_count"] == 3
    assert payload["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "two\nlines\n"},
        {"output_type": "execute_result", "data": {"text/plain": "42", "text/html": "<b>42</b>"},
         "metadata": {}, "execution_count": 3},
        {"output_type": "error", "ename": "E", "evalue": "", "traceback": []},
    ]  # fmt: skip


def test_insert_puts_the_kth_newest_shared_cell_in_a_new_cell_below(
    make_widget: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Shell:
        def __init__(self) -> None:
            self.inputs: list[tuple[str, bool]] = []

        def set_next_input(self, text: str, replace: bool = False) -> None:
            self.inputs.append((text, replace))

    shell = Shell()
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    widget = make_widget("widget:insert")
    for source in ("first = 1", "second = 2"):
        widget.share_cell(source)
    wait_for(lambda: len([m for m in widget.messages if m.subject == "cell"]) == 2)

    assert widget.insert() == "second = 2"
    assert widget.insert(2) == "first = 1"
    assert shell.inputs == [("second = 2", False), ("first = 1", False)]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "still not true"
        time.sleep(0.02)
