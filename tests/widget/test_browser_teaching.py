"""Live teaching in real JupyterLab, in real Chromium: a cell shared while it runs
(``%%share --live``) updates one block in place on the other pages, rich outputs render
sanitized, and following a teacher adds their shared cells, unrun, to one's notebook.

The teacher (ada) and the students (grace, alan) are browser contexts of their own, with
kernels of their own; every wait is a condition with a deadline.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import time
import urllib.parse
from typing import Any

from .conftest import PAGE_TIMEOUT, REPO_ROOT, Lab, OpenNotebook
from .test_browser import expect, run_cell, show_widget, wait_until, widget_cell

CORPUS = json.loads((REPO_ROOT / "tests" / "xss_corpus.json").read_text())
#: How long a live cell may take to show its end on another page (a loaded machine).
LIVE_TIMEOUT = 90_000

#: Records in the page each distinct state of the widget's shared cells, as they are
#: drawn: for each cell block its status, its outputs' text and how many outputs and
#: stream lines it shows, with the time (performance.now()) it was drawn.
RECORD_STATES = """(root) => {
  const states = (window.__jcStates = []);
  const snap = () => [...root.querySelectorAll(".jc-cell")].map((cell) => {
    const outputs = cell.querySelector(".jc-outputs");
    return {
      status: cell.dataset.status,
      text: outputs ? outputs.textContent : "",
      outputs: outputs ? outputs.childElementCount : 0,
      streams: [...cell.querySelectorAll(".jc-stream")].map((s) => s.textContent),
    };
  });
  let last = "";
  const record = () => {
    const cells = snap();
    const key = JSON.stringify(cells);
    if (key === last) return;
    last = key;
    states.push({ at: performance.now(), cells });
  };
  new MutationObserver(record).observe(root.querySelector(".jc-feed"), {
    childList: true, subtree: true, characterData: true, attributes: true,
  });
  record();
}"""


def teacher(open_notebook: OpenNotebook, *cells: str, name: str | None = None) -> Any:
    """Ada's notebook: the extension loaded (its first cell, run), then ``cells``."""
    page = open_notebook("%load_ext jupyter_channels", *cells, user="ada", name=name)
    run_cell(page, 0)
    return page


def student(open_notebook: OpenNotebook, topic: str, user: str = "grace", **kw: Any) -> Any:
    """A student's notebook showing the topic's widget, recording its cell states."""
    page = open_notebook(widget_cell(topic), user=user, **kw)
    widget = show_widget(page)
    widget.evaluate(RECORD_STATES)
    return widget


def states(widget: Any) -> list[dict[str, Any]]:
    return list(widget.page.evaluate("window.__jcStates"))


def running_states(widget: Any) -> list[dict[str, Any]]:
    """The recorded states in which the (only) shared cell was running."""
    return [
        s["cells"][0] for s in states(widget) if s["cells"] and s["cells"][0]["status"] == "running"
    ]


def cell_messages(lab: Lab, topic: str) -> list[dict[str, Any]]:
    return [m for m in lab.messages(topic) if m["subject"] == "cell"]


def run_to_end(page: Any, index: int) -> None:
    """Run a cell and wait until it has finished (its prompt holds a number)."""
    run_cell(page, index)
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")
    expect(prompt).to_have_text(re.compile(r"^\[\d+\]:$"), timeout=LIVE_TIMEOUT)


# -- a live cell ------------------------------------------------------------------------------

LIVE_CELL = """\
%%share --live {topic}
import time
import pandas as pd
for i in range(10):
    print(f"line {{i}}", flush=True)
    time.sleep(0.5)
pd.DataFrame({{"city": ["Oslo", "Lima", "Pune"], "temp": [3.5, 19.25, 27.0]}})"""


def test_a_live_cell_streams_its_lines_then_its_table_and_a_late_joiner_gets_the_end(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "teach:live"
    ada = teacher(open_notebook, LIVE_CELL.format(topic=topic))
    at_grace = student(open_notebook, topic)

    run_cell(ada, 1)
    block = at_grace.locator(".jc-cell")
    expect(block.locator(".jc-status")).to_have_text("ok", timeout=LIVE_TIMEOUT)
    table = block.locator(".jc-html table")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tbody tr").nth(1).locator("td")).to_have_text(["Lima", "19.25"])
    expect(block.locator(".jc-stream")).to_have_text("".join(f"line {i}\n" for i in range(10)))

    # While it ran, grace saw the lines arrive: one block, its text growing line by line.
    seen = states(at_grace)
    assert all(len(s["cells"]) <= 1 for s in seen), "the live cell was more than one block"
    running = running_states(at_grace)
    texts = [s["text"] for s in running]
    assert len(set(texts)) >= 5, texts
    for earlier, later in itertools.pairwise(texts):
        assert later.startswith(earlier), (earlier, later)
    assert all(not s["text"] or s["text"].startswith("line 0") for s in running)
    assert running[0]["outputs"] <= 1
    assert "Oslo" not in "".join(texts)
    expect(at_grace.locator(".jc-status[data-status='running']")).to_have_count(0)

    # The topic's history holds the end only: one stored cell message.
    stored = cell_messages(lab, topic)
    assert len(stored) == 1
    assert stored[0]["payload"]["status"] == "ok"

    # A late joiner gets that end, never a running state.
    at_alan = student(open_notebook, topic, user="alan")
    late = at_alan.locator(".jc-cell")
    expect(late).to_have_count(1)
    expect(late.locator(".jc-status")).to_have_text("ok")
    expect(late.locator(".jc-html table tbody tr")).to_have_count(3)
    assert all(c["status"] == "ok" for s in states(at_alan) for c in s["cells"]), (
        "the late joiner saw a running state"
    )


PROGRESS_CELL = """\
%%share --live {topic}
import time
from IPython.display import clear_output
for i in range(1, 9):
    clear_output(wait=True)
    print(f"progress {{i * 12.5:.1f}}%", flush=True)
    time.sleep(0.4)"""


def test_clear_output_progress_is_one_updating_line(lab: Lab, open_notebook: OpenNotebook) -> None:
    topic = "teach:progress"
    ada = teacher(open_notebook, PROGRESS_CELL.format(topic=topic))
    at_grace = student(open_notebook, topic)

    run_cell(ada, 1)
    block = at_grace.locator(".jc-cell")
    expect(block.locator(".jc-status")).to_have_text("ok", timeout=LIVE_TIMEOUT)
    expect(block.locator(".jc-stream")).to_have_text("progress 100.0%\n")

    running = running_states(at_grace)
    shown = [s["streams"] for s in running if s["streams"]]
    assert len({tuple(s) for s in shown}) >= 3, shown
    # Every state drawn holds one output of one line: the bar updates in place.
    for streams in shown:
        assert len(streams) == 1, streams
        assert streams[0].count("\n") == 1, streams
        assert streams[0].startswith("progress "), streams
    assert all(s["outputs"] <= 1 for s in running)


ERROR_CELL = """\
%%share --live {topic}
import time
print("starting", flush=True)
time.sleep(1)
def divide(a, b):
    return a / b
divide(1, 0)"""


def test_an_error_in_a_live_cell_is_its_final_state_with_the_traceback(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "teach:error"
    ada = teacher(open_notebook, ERROR_CELL.format(topic=topic))
    at_grace = student(open_notebook, topic)

    run_cell(ada, 1)
    block = at_grace.locator(".jc-cell")
    expect(block).to_have_attribute("data-status", "error", timeout=LIVE_TIMEOUT)
    expect(block.locator(".jc-status")).to_have_text("error")
    expect(block.locator(".jc-stream")).to_have_text("starting\n")
    traceback = block.locator(".jc-traceback")
    expect(traceback).to_contain_text("ZeroDivisionError")
    expect(traceback).to_contain_text("division by zero")
    expect(traceback).to_contain_text("divide(1, 0)")
    assert "\x1b[" not in traceback.text_content()
    assert any(s["text"] == "starting\n" for s in running_states(at_grace))
    stored = cell_messages(lab, topic)
    assert [m["payload"]["status"] for m in stored] == ["error"]


# -- rich outputs -----------------------------------------------------------------------------


def jpeg_base64(width: int, height: int) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="JPEG")
    return base64.b64encode(out.getvalue()).decode()


RICH_CELL = """\
%%share --live {topic}
import base64
import pandas as pd
from IPython.display import SVG, Image, Latex, Markdown, display
display(pd.DataFrame({{"name": ["ada", "grace"], "score": [9.5, 8.25]}}))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="60" height="20">'
            '<rect id="bar" width="50" height="12" fill="teal"/></svg>'))
display(Image(data=base64.b64decode("{jpeg}"), format="jpeg"))
display(Markdown("Some **bold** words and `code`"))
display(Latex(r"$$\\frac{{a}}{{b}} + \\sqrt{{x}}$$"))"""


def test_rich_outputs_render_a_dataframe_svg_jpeg_markdown_and_latex(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "teach:rich"
    ada = teacher(open_notebook, RICH_CELL.format(topic=topic, jpeg=jpeg_base64(12, 8)))
    at_grace = student(open_notebook, topic)

    run_cell(ada, 1)
    block = at_grace.locator(".jc-cell")
    expect(block.locator(".jc-status")).to_have_text("ok", timeout=LIVE_TIMEOUT)
    table = block.locator(".jc-html table")
    expect(table.locator("thead th")).to_have_text(["", "name", "score"])
    expect(table.locator("tbody tr").nth(1).locator("td")).to_have_text(["grace", "8.25"])
    # The DataFrame's own <style> is not taken; the widget's table style is.
    assert block.locator(".jc-html style").count() == 0
    assert table.evaluate("t => getComputedStyle(t).borderCollapse") == "collapse"
    expect(block.locator(".jc-svg svg rect")).to_have_count(1)
    assert block.locator(".jc-svg svg rect").evaluate("r => r.getBBox().width") == 50
    image = block.locator("img.jc-image")
    expect(image).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,/9j/"))
    at_grace.page.wait_for_function(
        "img => img.complete && img.naturalWidth === 12", arg=image.element_handle()
    )
    expect(block.locator(".jc-markdown strong")).to_have_text("bold")
    expect(block.locator(".jc-markdown code")).to_have_text("code")
    expect(block.locator(".jc-latex math mfrac")).to_have_count(1)
    expect(block.locator(".jc-latex math msqrt")).to_have_count(1)


def test_the_xss_corpus_as_html_and_svg_outputs_stays_inert(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "teach:xss"
    page = open_notebook(widget_cell(topic), user="grace")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    widget = show_widget(page)

    # As stored cells (a join's history) and as live frames of a running cell.
    per_cell = 20
    chunks = [CORPUS[i : i + per_cell] for i in range(0, len(CORPUS), per_cell)]
    for n, chunk in enumerate(chunks):
        outputs = []
        for entry in chunk:
            for kind in ("text/html", "image/svg+xml"):
                data = {kind: entry["payload"], "text/plain": entry["name"]}
                outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
        lab.post(
            topic, "cell", {"source": f"# corpus {n}", "language": "python", "outputs": outputs}
        )
    lab.post(topic, "text", {"text": "corpus sent"})

    expect(widget.locator(".jc-cell")).to_have_count(len(chunks), timeout=LIVE_TIMEOUT)
    expect(widget.locator(".jc-msg").last).to_contain_text("corpus sent")
    # By the time every image of the page has loaded or failed, an injected handler would
    # have run.
    page.wait_for_function(
        "() => [...document.images].every((img) => img.complete)", timeout=PAGE_TIMEOUT
    )
    assert page.evaluate("window.__pwned") is None
    hostile = "script, iframe, object, embed, form, style, foreignObject, [onerror], [onload]"
    assert widget.locator(f".jc-outputs :is({hostile})").count() == 0
    origin = urllib.parse.urlsplit(lab.url).netloc
    foreign = [
        url
        for url in requests
        if not url.startswith(("data:", "blob:")) and urllib.parse.urlsplit(url).netloc != origin
    ]
    assert foreign == []


# -- follow mode ------------------------------------------------------------------------------


def saved_cells(lab: Lab, page: Any, path: str, count: int) -> list[dict[str, Any]]:
    """Save the page's notebook until its file holds ``count`` cells; returns them."""
    file = lab.notebooks / path
    cells: list[dict[str, Any]] = []

    def saved() -> bool:
        nonlocal cells
        page.bring_to_front()
        page.locator(".jp-NotebookPanel-toolbar [data-jp-item-name='save']").click()
        cells = json.loads(file.read_text())["cells"]
        return len(cells) == count

    wait_until(saved, timeout=60)
    # nbformat writes a source as a list of lines.
    for cell in cells:
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
    return cells


FOLLOWED = [
    "x = 41\nx + 1",
    "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)",
    "def double(a):\n    return a * 2\n\ndouble(21)",
]


def test_following_the_teacher_adds_their_shared_cells_unrun_and_tagged(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "teach:follow"
    ada = teacher(
        open_notebook,
        f"%%share {topic}\nintro = 'shared before anyone followed'",
        f"%%share {topic}\n{FOLLOWED[0]}",
        f"%%share --live {topic}\n{FOLLOWED[1]}",
        f"%%share --live {topic}\n{FOLLOWED[2]}",
        f"%%share {topic}\nafter = 'shared after the unfollow'",
        name="teacher.ipynb",
    )
    path = "follower.ipynb"
    grace = open_notebook(widget_cell(topic), user="grace", name=path)
    at_grace = show_widget(grace)
    notebook_cells = grace.locator(".jp-Notebook .jp-Cell")

    run_to_end(ada, 1)
    first = at_grace.locator(".jc-cell").first
    expect(first.locator(".jc-code")).to_have_text("intro = 'shared before anyone followed'")
    follow = first.locator(".jc-follow")
    expect(follow).to_have_text("Follow teacher.ipynb")
    grace.bring_to_front()
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "true")
    expect(follow).to_have_text("Following teacher.ipynb")
    expect(at_grace.locator(".jc-following .jc-followed")).to_have_text("teacher.ipynbStop")
    # What was shared before following stays out of the notebook.
    expect(notebook_cells).to_have_count(1)

    for index in (2, 3, 4):
        run_to_end(ada, index)
    expect(at_grace.locator(".jc-cell[data-status='ok']")).to_have_count(4)
    expect(notebook_cells).to_have_count(4)
    for n, source in enumerate(FOLLOWED, start=1):
        added = notebook_cells.nth(n)
        expect(added.locator(".jp-InputArea-editor .cm-line")).to_have_text(source.split("\n"))
        expect(added.locator(".jp-InputPrompt")).to_have_text("[ ]:")
        expect(added.locator(".jp-OutputArea-output")).to_have_count(0)

    cells = saved_cells(lab, grace, path, 4)
    assert [c["source"] for c in cells[1:]] == FOLLOWED
    for cell in cells[1:]:
        assert cell["cell_type"] == "code"
        assert cell["execution_count"] is None
        assert cell["outputs"] == []
        (tag,) = cell["metadata"]["tags"]
        assert tag.startswith("shared-by-teacher.ipynb-at-"), tag
        assert " " not in tag
        assert "," not in tag
        assert cell["metadata"]["jupyter_channels"]["topic"] == topic

    # Unfollowing stops it: the next shared cell shows in the feed only.
    at_grace.locator(".jc-following .jc-unfollow").click()
    expect(at_grace.locator(".jc-following")).to_be_hidden()
    expect(follow).to_have_attribute("aria-pressed", "false")
    run_to_end(ada, 5)
    expect(at_grace.locator(".jc-cell")).to_have_count(5)
    expect(at_grace.locator(".jc-cell").last.locator(".jc-code")).to_have_text(
        "after = 'shared after the unfollow'"
    )
    expect(notebook_cells).to_have_count(4)
    assert [c["source"] for c in saved_cells(lab, grace, path, 4)[1:]] == FOLLOWED


def test_following_works_in_notebook_7(lab: Lab, open_notebook: OpenNotebook) -> None:
    topic = "teach:follow-nb7"
    ada = teacher(
        open_notebook,
        f"%%share {topic}\nfirst = 1",
        f"%%share --live {topic}\n{FOLLOWED[2]}",
        name="teacher7.ipynb",
    )
    grace = open_notebook(widget_cell(topic), user="grace", app="notebook")
    at_grace = show_widget(grace)

    run_to_end(ada, 1)
    follow = at_grace.locator(".jc-cell").first.locator(".jc-follow")
    expect(follow).to_have_text("Follow teacher7.ipynb")
    grace.bring_to_front()
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "true")
    run_to_end(ada, 2)
    cells = grace.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(2)
    expect(cells.nth(1).locator(".jp-InputArea-editor .cm-line")).to_have_text(
        FOLLOWED[2].split("\n")
    )
    expect(cells.nth(1).locator(".jp-InputPrompt")).to_have_text("[ ]:")
    expect(cells.nth(1).locator(".jp-OutputArea-output")).to_have_count(0)


# -- how fast it draws ------------------------------------------------------------------------

FAST_CELL = """\
%%share --live {topic}
import time
for i in range(80):
    print(f"tick {{i}}", flush=True)
    time.sleep(0.05)"""


def test_the_receiver_draws_a_fast_live_cell_at_its_update_rate(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    """A cell printing 20 lines a second for 4 s (the sender sends at most 10 updates a
    second): how many updates a second the other page draws, and the bytes a second its
    WebSocket receives for it. Reported, not asserted (the machine is shared)."""
    topic = "teach:rate"
    ada = teacher(open_notebook, FAST_CELL.format(topic=topic))
    grace = open_notebook(widget_cell(topic), user="grace")
    received: list[tuple[float, int]] = []

    def on_socket(ws: Any) -> None:
        if "api/channels" in ws.url:
            ws.on("framereceived", lambda frame: received.append((time.monotonic(), len(frame))))

    # The widget opens its socket when its cell runs, after this.
    grace.on("websocket", on_socket)
    at_grace = show_widget(grace)
    at_grace.evaluate(RECORD_STATES)
    before = len(received)
    started = time.monotonic()

    run_cell(ada, 1)
    expect(at_grace.locator(".jc-cell .jc-status")).to_have_text("ok", timeout=LIVE_TIMEOUT)
    ended = time.monotonic()
    running = [s for s in states(at_grace) if s["cells"] and s["cells"][0]["status"] == "running"]
    assert len(running) >= 5
    drawn_rate = (len(running) - 1) / ((running[-1]["at"] - running[0]["at"]) / 1000)
    frames = [(t, n) for t, n in received[before:] if started <= t <= ended]
    wire = sum(n for _, n in frames) / (frames[-1][0] - frames[0][0]) if len(frames) > 1 else 0
    print(
        f"\nlive cell at 20 prints/s: {len(running)} running states drawn, "
        f"{drawn_rate:.1f} updates/s drawn; {len(frames)} frames, {wire / 1024:.1f} KiB/s received"
    )
