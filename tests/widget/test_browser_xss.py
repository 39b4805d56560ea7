"""The shared XSS corpus (tests/xss_corpus.json) in real JupyterLab and Chromium: every
payload sent as a `text` message (Markdown) and as the `text/html` and `image/svg+xml`
outputs of a shared cell, through the join's history and live. Nothing runs
(``window.__pwned`` stays undefined, no script, no event handler, no `javascript:` link)
and the page asks nothing of any host but the Jupyter server's.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from .conftest import REPO_ROOT, Lab, OpenNotebook
from .test_browser import expect, show_widget, widget_cell

CORPUS: list[dict[str, str]] = json.loads((REPO_ROOT / "tests" / "xss_corpus.json").read_text())

#: What the page may load besides the server's own URLs.
LOCAL_SCHEMES = ("data:", "blob:", "about:")


def cell_of(entry: dict[str, str]) -> dict[str, Any]:
    """A shared cell whose outputs are the payload as HTML and as SVG."""
    return {
        "source": f"# {entry['name']}",
        "language": "python",
        "execution_count": 1,
        "outputs": [
            {
                "output_type": "display_data",
                "data": {"text/html": entry["payload"], "text/plain": "html"},
                "metadata": {},
            },
            {
                "output_type": "display_data",
                "data": {"image/svg+xml": entry["payload"], "text/plain": "svg"},
                "metadata": {},
            },
        ],
    }


#: Every element of the widget with an attribute that runs script or loads a remote URL.
DANGEROUS = """root => {
    const found = [];
    for (const el of [root, ...root.querySelectorAll("*")]) {
        const tag = el.localName;
        if (["script", "iframe", "object", "embed", "form", "style", "link", "base", "meta",
             "foreignobject", "animate", "set"].includes(tag)) found.push(tag);
        for (const {name, value} of el.attributes) {
            const v = value.replace(/[\\s\\u0000-\\u001f]/g, "").toLowerCase();
            if (name.startsWith("on")) found.push(`${tag}[${name}]`);
            if (/^(javascript|vbscript|data:text)/.test(v)) found.push(`${tag}[${name}=${v}]`);
            if (["src", "href", "xlink:href", "srcset", "poster", "background", "action",
                 "formaction"].includes(name) && /^(https?:)?\\/\\//.test(v) && tag !== "a") {
                found.push(`${tag}[${name}=${v}]`);
            }
            if (name === "style" && /url\\(|image-set|expression/.test(v)) {
                found.push(`${tag}[style]`);
            }
            // A <use> may point inside its own document only.
            if (tag === "use" && name.endsWith("href") && !v.startsWith("#")) {
                found.push(`use[${name}=${v}]`);
            }
        }
    }
    return found;
}"""


def test_the_xss_corpus_as_text_and_as_cell_outputs_runs_nothing_and_loads_nothing_remote(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    assert len(CORPUS) >= 40
    topic = "xss:corpus"
    half = len(CORPUS) // 2
    for entry in CORPUS[:half]:  # through the join's history (its last 50 messages)
        lab.post(topic, "text", {"text": entry["payload"]})
    page = open_notebook(widget_cell(topic))
    requests: list[str] = []
    page.context.on("request", lambda request: requests.append(request.url))
    widget = show_widget(page)
    expect(widget.locator(".jc-msg")).to_have_count(min(half, 50))
    for entry in CORPUS:  # live
        if CORPUS.index(entry) >= half:
            lab.post(topic, "text", {"text": entry["payload"]})
        lab.post(topic, "cell", cell_of(entry))
    shown = min(half, 50) + len(CORPUS) - half + len(CORPUS)
    expect(widget.locator(".jc-msg")).to_have_count(shown)
    expect(widget.locator('.jc-msg[data-subject="cell"]')).to_have_count(len(CORPUS))
    # Rendered, not shown as source: Markdown for the texts, sanitized markup for outputs.
    expect(widget.locator(".jc-text.jc-md")).to_have_count(shown - len(CORPUS))
    assert widget.locator(".jc-html, .jc-svg").count() > len(CORPUS) // 2

    # Every image has loaded or failed by now: an onerror would have run.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jc-widget img')].every(img => img.complete)"
    )
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert widget.evaluate(DANGEROUS) == []
    links = widget.locator(".jc-feed a[href]")
    for link in links.evaluate_all(
        "els => els.map(a => [a.href, a.target, a.rel, a.closest('.jc-widget') !== null])"
    ):
        href, target, rel, _ = link
        assert urllib.parse.urlsplit(href).scheme in ("http", "https", "mailto"), link
        assert target == "_blank", link
        assert set(rel.split()) >= {"noopener", "noreferrer"}, link

    # Moving the pointer over the messages runs nothing either (no mouseover handler).
    for text in widget.locator(".jc-text").all()[:20]:
        text.hover()
    assert page.evaluate("typeof window.__pwned") == "undefined"

    own = urllib.parse.urlsplit(lab.url).netloc
    remote = [
        url
        for url in requests
        if not url.startswith(LOCAL_SCHEMES) and urllib.parse.urlsplit(url).netloc != own
    ]
    assert remote == []
