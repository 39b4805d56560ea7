// The sanitizer: every payload of the shared XSS corpus comes out inert, and the markup
// that plots, tables and KaTeX need survives.
// node --test js/tests/

import "./jsdom.js";

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { cleanStyle, isSafeImage, isSafeLink, sanitizeHtml, sanitizeSvg } from "../sanitize.js";
import { CORPUS, assertInert } from "./inert.js";
import { markup } from "./jsdom.js";

const PNG =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

describe("the XSS corpus", () => {
  test("holds at least 40 named payloads", () => {
    assert.ok(CORPUS.length >= 40);
    assert.equal(new Set(CORPUS.map((entry) => entry.name)).size, CORPUS.length);
  });

  for (const { name, payload } of CORPUS) {
    test(`comes out inert through sanitizeHtml and sanitizeSvg: ${name}`, () => {
      assertInert(sanitizeHtml(payload), `sanitizeHtml(${name})`);
      assertInert(sanitizeSvg(payload), `sanitizeSvg(${name})`);
    });
  }
});

describe("sanitizeHtml", () => {
  test("returns a DocumentFragment to append to the page", () => {
    const fragment = sanitizeHtml("<p>hi</p>");
    assert.equal(fragment.nodeType, 11);
    const host = window.document.createElement("div");
    host.append(fragment);
    assert.equal(host.querySelector("p")?.textContent, "hi");
  });

  test("keeps the text of what it drops", () => {
    const fragment = sanitizeHtml('<form action="https://evil.example/"><b>bold</b> text</form>');
    assert.equal(markup(fragment), '<b xmlns="http://www.w3.org/1999/xhtml">bold</b> text');
  });

  test("opens http(s) and mailto links in a new tab without an opener or referrer", () => {
    const fragment = sanitizeHtml(
      '<a href="https://example.org/a" target="_self">a</a><a href="mailto:ada@example.org">m</a>',
    );
    const links = Array.from(fragment.querySelectorAll("a"));
    assert.deepEqual(
      links.map((a) => [a.getAttribute("href"), a.target, a.rel]),
      [
        ["https://example.org/a", "_blank", "noopener noreferrer"],
        ["mailto:ada@example.org", "_blank", "noopener noreferrer"],
      ],
    );
  });

  test("drops javascript:, data: and relative links but keeps their text", () => {
    const fragment = sanitizeHtml(
      '<a href="javascript:alert(1)">j</a><a href="data:text/html,x">d</a><a href="/logout">r</a>',
    );
    assert.equal(fragment.querySelectorAll("a[href]").length, 0);
    assert.equal(fragment.textContent, "jdr");
  });

  test("keeps raster data: images and turns any other image into its alt text", () => {
    const fragment = sanitizeHtml(
      `<img src="${PNG}" alt="dot"><img src="https://evil.example/x.png" alt="remote">` +
        '<img src="data:image/svg+xml;base64,PHN2Zy8+" alt="svg">',
    );
    const images = fragment.querySelectorAll("img");
    assert.equal(images.length, 1);
    assert.equal(images[0].getAttribute("src"), PNG);
    assert.equal(fragment.textContent, "remotesvg");
  });

  test("keeps a DataFrame's table with its alignment styles", () => {
    const fragment = sanitizeHtml(
      '<table class="dataframe" border="1"><thead><tr style="text-align: right;"><th></th>' +
        "<th>a</th></tr></thead><tbody><tr><th>0</th><td>1.5</td></tr></tbody></table>",
    );
    assert.equal(fragment.querySelectorAll("td").length, 1);
    assert.equal(fragment.querySelector("tr")?.getAttribute("style"), "text-align: right");
    assert.equal(fragment.querySelector("table")?.className, "dataframe");
  });

  test("keeps KaTeX's MathML", () => {
    const fragment = sanitizeHtml(
      '<span class="katex"><math xmlns="http://www.w3.org/1998/Math/MathML"><semantics><mrow>' +
        '<msup><mi>e</mi><mn>2</mn></msup></mrow><annotation encoding="application/x-tex">e^2' +
        "</annotation></semantics></math></span>",
    );
    assert.ok(fragment.querySelector("math msup mi"));
    assert.equal(fragment.querySelector("annotation")?.textContent, "e^2");
  });

  test("prefixes ids so that received markup cannot shadow the page's names", () => {
    const fragment = sanitizeHtml('<div id="__pwned">x</div>');
    assert.equal(fragment.querySelector("div")?.id, "user-content-__pwned");
    const svg = sanitizeSvg('<svg><path id="user-content-p"/><use href="#user-content-p"/></svg>');
    assert.equal(svg.querySelector("use")?.getAttribute("href"), `#${svg.querySelector("path")?.id}`);
  });

  test("keeps only the read-only checkbox of a task list among inputs", () => {
    const fragment = sanitizeHtml('<input type="checkbox" checked><input type="text" value="x">');
    const inputs = fragment.querySelectorAll("input");
    assert.equal(inputs.length, 1);
    assert.ok(inputs[0].disabled && inputs[0].checked);
  });
});

describe("sanitizeSvg", () => {
  const plot =
    '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' +
    '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n' +
    '<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="460pt" height="345pt" viewBox="0 0 460 345" ' +
    'xmlns="http://www.w3.org/2000/svg" version="1.1">\n' +
    '<defs><clipPath id="p1"><rect x="57" y="41" width="357" height="266"/></clipPath>' +
    '<path id="m0" d="M 0 0 L 0 3.5" style="stroke: #000000; stroke-width: 0.8"/></defs>\n' +
    '<g id="line2d_1"><use xlink:href="#m0" x="73" y="307" style="stroke: #000000"/></g>\n' +
    '<path d="M 73 295 L 398 53" clip-path="url(#p1)" style="fill: none; stroke: #1f77b4"/>\n' +
    '<text x="10" y="20" style="font-size: 10px; font-family: \'DejaVu Sans\'">title</text>\n' +
    "</svg>\n";

  test("keeps a matplotlib figure, its local references rewritten to the prefixed ids", () => {
    const fragment = sanitizeSvg(plot);
    assert.equal(fragment.childNodes.length, 1);
    const svg = /** @type {Element} */ (fragment.firstChild);
    assert.equal(svg.localName, "svg");
    assert.equal(svg.getAttribute("viewBox"), "0 0 460 345");
    const use = svg.querySelector("use");
    assert.equal(use?.getAttributeNS("http://www.w3.org/1999/xlink", "href"), "#user-content-m0");
    assert.ok(svg.querySelector("#user-content-m0"));
    const clipped = svg.querySelector("path[clip-path]");
    assert.equal(clipped?.getAttribute("clip-path"), "url(#user-content-p1)");
    assert.equal(svg.querySelector("text")?.textContent, "title");
    assert.equal(svg.querySelector("text")?.getAttribute("style"), "font-size: 10px; font-family: 'DejaVu Sans'");
    assertInert(fragment, "plot");
  });

  test("keeps a local url() in a style attribute, prefixed like the id it names", () => {
    const fragment = sanitizeSvg('<svg><linearGradient id="g"/><rect style="fill: url(#g)"/></svg>');
    assert.equal(fragment.querySelector("rect")?.getAttribute("style"), "fill: url(#user-content-g)");
  });

  test("keeps an embedded raster image (matplotlib's imshow)", () => {
    const fragment = sanitizeSvg(
      `<svg xmlns:xlink="http://www.w3.org/1999/xlink"><image width="4" height="4" xlink:href="${PNG}"/></svg>`,
    );
    const image = fragment.querySelector("image");
    assert.equal(image?.getAttributeNS("http://www.w3.org/1999/xlink", "href"), PNG);
  });

  test("holds nothing but <svg> elements", () => {
    const fragment = sanitizeSvg("<p>para</p>text<svg><rect/></svg><b>b</b>");
    assert.deepEqual(
      Array.from(fragment.childNodes).map((node) => node.nodeName.toLowerCase()),
      ["svg"],
    );
  });

  test("drops references outside the image", () => {
    const fragment = sanitizeSvg(
      '<svg xmlns:xlink="http://www.w3.org/1999/xlink"><use href="https://evil.example/s.svg#a"/>' +
        '<image xlink:href="https://evil.example/x.png"/><rect fill="url(https://evil.example/p)"/></svg>',
    );
    assert.equal(fragment.querySelector("use")?.attributes.length, 0);
    assert.equal(fragment.querySelector("image")?.attributes.length, 0);
    assert.equal(fragment.querySelector("rect")?.hasAttribute("fill"), false);
  });
});

describe("the URL and style rules", () => {
  test("isSafeLink accepts absolute http(s) and mailto only", () => {
    for (const href of ["https://example.org/", "http://x.example/?a=1", "mailto:a@b.example"]) {
      assert.ok(isSafeLink(href), href);
    }
    for (const href of ["javascript:alert(1)", "java\tscript:x", "data:text/html,x", "/api", "//evil.example/", "#top", "ftp://x.example/"]) {
      assert.ok(!isSafeLink(href), href);
    }
  });

  test("isSafeImage accepts base64 raster data: URLs only", () => {
    assert.ok(isSafeImage(PNG));
    assert.ok(isSafeImage("data:image/webp;base64,UklGRg=="));
    for (const src of ["data:image/svg+xml;base64,PHN2Zy8+", "data:image/png,raw", "https://x.example/a.png", "x.png"]) {
      assert.ok(!isSafeImage(src), src);
    }
  });

  test("cleanStyle keeps layout and colour, drops urls, escapes and unknown functions", () => {
    assert.equal(cleanStyle("color: red; position: fixed; TEXT-ALIGN: right"), "color: red; text-align: right");
    assert.equal(cleanStyle("background-color: rgb(1, 2, 3)"), "background-color: rgb(1, 2, 3)");
    assert.equal(cleanStyle("width: calc(100% - rgb(1,2,3))"), "width: calc(100% - rgb(1,2,3))");
    assert.equal(cleanStyle("background-color: url(https://evil.example/)"), "");
    assert.equal(cleanStyle("color: var(--x)"), "");
    assert.equal(cleanStyle("color: red; background: u\\72l(x)"), "");
    assert.equal(cleanStyle("width: expression(alert(1))"), "");
  });

  test("cleanStyle keeps quoted font names and local url() references, nothing that moves a box", () => {
    assert.equal(cleanStyle("font: 10px 'DejaVu Sans'"), "font: 10px 'DejaVu Sans'");
    assert.equal(cleanStyle('fill: url("#g1")'), 'fill: url("#g1")');
    assert.equal(cleanStyle("fill: url(#g1 x)"), "");
    assert.equal(cleanStyle("font-family: 'a"), "");
    assert.equal(cleanStyle("position: fixed; margin-top: -999px; transform: scale(9); text-indent: -9px"), "");
  });
});

describe("the inertness check", () => {
  // Unsanitized, these payloads break one rule each: the check is not vacuous.
  const caught = [
    "script element", "img onerror", "a href javascript", "a href data text/html",
    "a relative href", "style element remote background", "style attribute url", "img remote",
    "img srcset remote", "video poster remote", "table background remote", "base href",
    "meta refresh", "iframe javascript src", "form action", "dom clobbering id", "svg animate href",
    "svg use remote", "svg fill url remote", "svg foreignObject iframe", "math href",
  ];

  for (const name of caught) {
    test(`fails on the unsanitized payload: ${name}`, () => {
      const entry = CORPUS.find((candidate) => candidate.name === name);
      assert.ok(entry, name);
      const raw = window.document.createRange().createContextualFragment(entry.payload);
      assert.throws(() => assertInert(raw, name), assert.AssertionError);
    });
  }
});
