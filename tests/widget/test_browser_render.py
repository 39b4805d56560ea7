"""The renderers of received content (js/markdown.js, js/sanitize.js) in real Chromium,
without JupyterLab: every payload of the shared XSS corpus, rendered by each of them and
put in the page, runs nothing and loads nothing; and what they render displays."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PAGE_TIMEOUT, REPO_ROOT, missing

CORPUS = json.loads((REPO_ROOT / "tests" / "xss_corpus.json").read_text())
#: The page's own origin; every request is answered here, and any other is a failure.
ORIGIN = "http://render.test"
ENTRY = 'export * from "./js/markdown.js";\nexport * from "./js/sanitize.js";\n'
RENDERERS = ("renderMarkdown", "renderLatex", "sanitizeHtml", "sanitizeSvg")
#: 1x1 PNG: loads once everything before it in the page has had its chance to load.
SENTINEL_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def renderers(tmp_path_factory: pytest.TempPathFactory) -> str:
    """js/markdown.js and js/sanitize.js bundled as one script defining ``window.jcRender``."""
    esbuild = REPO_ROOT / "node_modules" / ".bin" / "esbuild"
    if not esbuild.is_file() or shutil.which("node") is None:
        missing("esbuild is not installed (npm ci)")
    out = tmp_path_factory.mktemp("render") / "render.js"
    subprocess.run(
        [
            str(esbuild),
            "--bundle",
            "--format=iife",
            "--global-name=jcRender",
            "--target=es2020",
            "--sourcefile=entry.js",
            f"--outfile={out}",
            "--log-level=warning",
        ],
        input=ENTRY,
        text=True,
        cwd=REPO_ROOT,
        check=True,
        timeout=120,
    )
    return Path(out).read_text()


@pytest.fixture
def page(browser: Any, renderers: str) -> Iterator[Any]:
    """A page at ORIGIN holding the renderers; ``page.foreign`` lists every request it made
    elsewhere (answered with an error) and ``page.dialogs`` every alert or confirm."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT)
    page.foreign = []
    page.dialogs = []

    def route(route: Any) -> None:
        url = route.request.url
        if url == f"{ORIGIN}/":
            route.fulfill(content_type="text/html", body="<!doctype html><main></main>")
        elif url == f"{ORIGIN}/render.js":
            route.fulfill(content_type="text/javascript", body=renderers)
        else:
            page.foreign.append(url)
            route.abort()

    def dialog(dialog: Any) -> None:
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    context.route("**/*", route)
    page.on("dialog", dialog)
    # Requests the router does not see (a navigation of a frame, a ping, a prefetch).
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith((ORIGIN, "data:")) else page.foreign.append(request.url)
        ),
    )
    page.goto(f"{ORIGIN}/")
    page.add_script_tag(url=f"{ORIGIN}/render.js")
    try:
        yield page
    finally:
        context.close()


def settle(page: Any) -> None:
    """Waits until an image appended after everything else has loaded: by then an injected
    <img src=x> has failed and run its onerror, and a remote load has been requested."""
    page.evaluate(
        """src => new Promise(resolve => {
            const img = new Image();
            const frames = () => requestAnimationFrame(() => requestAnimationFrame(resolve));
            img.onload = img.onerror = frames;
            img.src = src;
            document.body.append(img);
        })""",
        SENTINEL_PNG,
    )


def test_no_payload_of_the_corpus_runs_or_loads_anything_in_chromium(page: Any) -> None:
    rendered = page.evaluate(
        """([corpus, renderers]) => {
            const main = document.querySelector("main");
            let count = 0;
            for (const {name, payload} of corpus) {
                for (const renderer of renderers) {
                    const box = document.createElement("section");
                    box.dataset.case = `${renderer}: ${name}`;
                    box.append(window.jcRender[renderer](payload));
                    main.append(box);
                    count += 1;
                }
            }
            // Open every <details>, so that an ontoggle would fire.
            for (const details of main.querySelectorAll("details")) details.open = true;
            return count;
        }""",
        [CORPUS, list(RENDERERS)],
    )
    assert rendered == len(CORPUS) * len(RENDERERS)
    settle(page)
    found = page.evaluate(
        """() => {
            const main = document.querySelector("main");
            const bad = [];
            const banned = "script, style, iframe, object, embed, form, base, meta, link, " +
                "foreignObject, animate, set, template, noscript";
            for (const el of main.querySelectorAll(banned)) bad.push(el.localName);
            for (const el of main.querySelectorAll("*")) {
                for (const attr of el.attributes) {
                    if (attr.name.startsWith("on")) bad.push(`${el.localName}[${attr.name}]`);
                }
            }
            return bad;
        }"""
    )
    assert found == []
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("parent.__pwned") is None
    assert page.dialogs == []
    assert page.foreign == []


def test_markdown_math_and_code_render_as_such_in_chromium(page: Any) -> None:
    text = (
        "**bold** and $e^{i\\pi}+1=0$, hi @ada\n\n"
        "| a | b |\n|---|--:|\n| 1 | 2 |\n\n"
        "```python\nprint('hi')\n```\n\n"
        f"![dot]({SENTINEL_PNG})"
    )
    shape = page.evaluate(
        """text => {
            const main = document.querySelector("main");
            main.append(window.jcRender.renderMarkdown(text));
            const math = main.querySelector("math");
            return {
                strong: main.querySelector("strong")?.textContent,
                cells: [...main.querySelectorAll("td")].map(td => td.textContent),
                mathNamespace: math?.namespaceURI,
                mathWidth: math?.getBoundingClientRect().width,
                keyword: main.querySelector("pre.jc-codeblock code .hljs-built_in")?.textContent,
                lang: main.querySelector("pre.jc-codeblock")?.dataset.lang,
                mention: main.querySelector(".jc-mention")?.dataset.user,
                image: main.querySelector("img")?.getAttribute("src")?.slice(0, 22),
            };
        }""",
        text,
    )
    assert shape == {
        "strong": "bold",
        "cells": ["1", "2"],
        "mathNamespace": "http://www.w3.org/1998/Math/MathML",
        "mathWidth": shape["mathWidth"],
        "keyword": "print",
        "lang": "python",
        "mention": "ada",
        "image": "data:image/png;base64,",
    }
    # Chromium lays out MathML natively: the formula has a width of its own.
    assert shape["mathWidth"] > 20
    settle(page)
    assert page.foreign == []
