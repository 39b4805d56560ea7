// Markdown and math of messages: what renders, and that every payload of the shared XSS
// corpus comes out inert.
// node --test js/tests/

import "./jsdom.js";

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MAX_FORMULAS, renderLatex, renderMarkdown } from "../markdown.js";
import { CORPUS, assertInert } from "./inert.js";
import { markup } from "./jsdom.js";

describe("the XSS corpus", () => {
  for (const { name, payload } of CORPUS) {
    test(`comes out inert through renderMarkdown and renderLatex: ${name}`, () => {
      assertInert(renderMarkdown(payload), `renderMarkdown(${name})`);
      assertInert(renderLatex(payload), `renderLatex(${name})`);
    });
  }

  test("raw HTML in a message is shown as text", () => {
    const fragment = renderMarkdown('<img src=x onerror="window.__pwned=1">');
    assert.equal(fragment.querySelector("img"), null);
    assert.equal(fragment.textContent?.trim(), '<img src=x onerror="window.__pwned=1">');
  });

  test("a javascript: link, even written with entities, stays text", () => {
    for (const text of ["[click](javascript:alert(1))", "[click](&#106;avascript:alert(1))", "<javascript:alert(1)>"]) {
      assert.equal(renderMarkdown(text).querySelector("a"), null, text);
    }
  });

  test("a remote image becomes its alt text", () => {
    const fragment = renderMarkdown("![a pixel](https://evil.example/pixel.png)");
    assert.equal(fragment.querySelector("img"), null);
    assert.equal(fragment.textContent?.trim(), "a pixel");
  });

  test("KaTeX's \\href, \\url, \\htmlId and \\includegraphics make no link, id or image", () => {
    const fragment = renderMarkdown(
      "$\\href{https://evil.example/}{a}$ $\\url{https://evil.example/}$ $\\htmlId{__pwned}{x}$ " +
        "$\\includegraphics{https://evil.example/x.png}$",
    );
    assert.equal(fragment.querySelectorAll("math").length, 4);
    assert.equal(fragment.querySelector("a, img, [id], [href]"), null);
  });

  test("a macro that expands forever renders an error, in bounded time", () => {
    const fragment = renderMarkdown("$\\def\\a{\\a\\a}\\a$ after");
    assert.match(fragment.textContent ?? "", /after/);
  });
});

describe("renderMarkdown", () => {
  test("renders emphasis, strikethrough and a link that opens in a new tab", () => {
    const fragment = renderMarkdown("**bold** ~~gone~~ [docs](https://example.org/docs)");
    assert.equal(fragment.querySelector("strong")?.textContent, "bold");
    assert.equal(fragment.querySelector("s")?.textContent, "gone");
    const link = fragment.querySelector("a");
    assert.equal(link?.getAttribute("href"), "https://example.org/docs");
    assert.equal(link?.getAttribute("target"), "_blank");
    assert.equal(link?.getAttribute("rel"), "noopener noreferrer");
  });

  test("links bare URLs", () => {
    const link = renderMarkdown("see https://example.org/x").querySelector("a");
    assert.equal(link?.getAttribute("href"), "https://example.org/x");
  });

  test("renders a GFM table with its alignment as classes", () => {
    const fragment = renderMarkdown("| name | n |\n|:-----|--:|\n| ada | 1 |\n| bob | 22 |");
    assert.deepEqual(
      Array.from(fragment.querySelectorAll("th")).map((th) => [th.textContent, th.className]),
      [["name", "jc-align-left"], ["n", "jc-align-right"]],
    );
    assert.equal(fragment.querySelectorAll("tbody tr").length, 2);
    assert.equal(fragment.querySelector("[style]"), null);
  });

  test("renders a task list with read-only checkboxes", () => {
    const fragment = renderMarkdown("- [ ] write\n- [x] test\n- plain");
    assert.ok(fragment.querySelector("ul.jc-task-list"));
    const boxes = Array.from(fragment.querySelectorAll("li.jc-task-item input"));
    assert.deepEqual(
      boxes.map((box) => [box.getAttribute("type"), box.hasAttribute("disabled"), box.hasAttribute("checked")]),
      [["checkbox", true, false], ["checkbox", true, true]],
    );
    assert.equal(fragment.querySelectorAll("li")[0].textContent?.trim(), "write");
    assert.equal(fragment.querySelectorAll("li")[2].querySelector("input"), null);
  });

  test("highlights a fenced code block and names its language", () => {
    const fragment = renderMarkdown("```python\ndef f(x):\n    return x < 1\n```");
    const pre = fragment.querySelector("pre.jc-codeblock");
    assert.equal(pre?.getAttribute("data-lang"), "python");
    assert.ok(pre?.querySelector("code span.hljs-keyword"));
    assert.equal(pre?.textContent, "def f(x):\n    return x < 1\n");
  });

  test("shows a fence in an unknown language as plain code, and one without a language too", () => {
    const known = renderMarkdown("```cobol\nDISPLAY 'HI'.\n```").querySelector("pre");
    assert.equal(known?.getAttribute("data-lang"), "cobol");
    assert.equal(known?.querySelector("span"), null);
    const bare = renderMarkdown("```\nx = 1\n```").querySelector("pre.jc-codeblock");
    assert.equal(bare?.hasAttribute("data-lang"), false);
    assert.equal(bare?.textContent, "x = 1\n");
  });

  test("highlights each bundled language", () => {
    for (const lang of ["python", "javascript", "bash", "json", "sql", "r", "julia", "markdown", "py", "js", "sh"]) {
      const pre = renderMarkdown(`\`\`\`${lang}\n# x\nlet = "s" + 1\n\`\`\``).querySelector("pre");
      assert.ok(pre?.querySelector("span[class^=hljs-]"), lang);
    }
  });

  test("renders inline and display math as MathML", () => {
    const fragment = renderMarkdown("Euler: $e^{i\\pi}+1=0$\n\n$$\n\\int_0^1 x\\,dx\n$$");
    const maths = fragment.querySelectorAll("math");
    assert.equal(maths.length, 2);
    assert.equal(maths[0].getAttribute("display"), null);
    assert.ok(maths[0].querySelector("msup"));
    assert.equal(maths[0].querySelector("annotation")?.textContent, "e^{i\\pi}+1=0");
    assert.equal(maths[1].getAttribute("display"), "block");
    assert.ok(fragment.querySelector(".jc-math-display math"));
  });

  test("leaves prices and escaped dollars as text", () => {
    for (const text of ["it costs $5 and $10", "a \\$x\\$ b", "$ x $", "$5 or $ 6"]) {
      const fragment = renderMarkdown(text);
      assert.equal(fragment.querySelector("math"), null, text);
    }
  });

  test(`renders the first ${MAX_FORMULAS} formulas of a text, and the rest as their source`, () => {
    const fragment = renderMarkdown("$x$ ".repeat(MAX_FORMULAS + 2));
    assert.equal(fragment.querySelectorAll("math").length, MAX_FORMULAS);
    const sources = Array.from(fragment.querySelectorAll("code.jc-math-source"));
    assert.deepEqual(sources.map((code) => code.textContent), ["$x$", "$x$"]);
  });

  test("finds each formula's closing dollar after openers that have none", () => {
    const fragment = renderMarkdown("$a $b $c and $x$ then $$y$$ $$z\n\n$w$ and $$ v $$");
    assert.deepEqual(
      Array.from(fragment.querySelectorAll("annotation")).map((a) => a.textContent),
      ["x", "y", "w", " v "],
    );
  });

  test("keeps a price before a formula as text", () => {
    const fragment = renderMarkdown("it costs $5, or $6 with $x^2$ and $\\$3$");
    assert.deepEqual(
      Array.from(fragment.querySelectorAll("annotation")).map((a) => a.textContent),
      ["x^2", "\\$3"],
    );
    assert.match(fragment.textContent ?? "", /^it costs \$5, or \$6 with /);
  });

  test("keeps math out of code", () => {
    const fragment = renderMarkdown("`$x$` and\n\n```\n$$y$$\n```");
    assert.equal(fragment.querySelector("math"), null);
  });

  test("marks mentions, but not in code, links or e-mail addresses", () => {
    const fragment = renderMarkdown(
      "hi @alice and @bob.smith. `@carol` [@dave](https://example.org) ada@example.org\n\n```\n@erin\n```",
    );
    assert.deepEqual(
      Array.from(fragment.querySelectorAll(".jc-mention")).map((span) => [
        span.getAttribute("data-user"),
        span.textContent,
      ]),
      [["alice", "@alice"], ["bob.smith", "@bob.smith"]],
    );
    assert.equal(fragment.querySelector("span.jc-mention")?.localName, "span");
  });

  test("keeps a mention's name to the allowed characters", () => {
    const fragment = renderMarkdown('@"><b>x</b> @ok"x');
    assert.deepEqual(
      Array.from(fragment.querySelectorAll(".jc-mention")).map((span) => span.getAttribute("data-user")),
      ["ok"],
    );
    assert.equal(fragment.querySelector("b"), null);
  });

  test("turns single newlines into line breaks, as a chat does", () => {
    assert.equal(renderMarkdown("one\ntwo").querySelectorAll("br").length, 1);
  });

  test("renders an empty message as nothing", () => {
    assert.equal(markup(renderMarkdown("")), "");
  });
});

describe("renderLatex", () => {
  for (const text of ["$$\\frac{1}{2}$$", "$\\frac{1}{2}$", "\\[\\frac{1}{2}\\]", "\\(\\frac{1}{2}\\)", "\\frac{1}{2}"]) {
    test(`renders ${text} as display math`, () => {
      const math = renderLatex(text).querySelector("math");
      assert.equal(math?.getAttribute("display"), "block");
      assert.ok(math?.querySelector("mfrac"));
    });
  }

  test("renders text with several formulas as Markdown", () => {
    const fragment = renderLatex("the roots are $x_1$ and $x_2$");
    assert.deepEqual(
      Array.from(fragment.querySelectorAll("annotation")).map((a) => a.textContent),
      ["x_1", "x_2"],
    );
    assert.match(fragment.textContent ?? "", /^the roots are /);
  });

  test("keeps an escaped dollar inside a formula", () => {
    const fragment = renderLatex("$\\$5 + x$");
    assert.equal(fragment.querySelector("annotation")?.textContent, "\\$5 + x");
  });

  test("renders an environment", () => {
    const fragment = renderLatex("\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}");
    assert.ok(fragment.querySelector("math mtable"));
  });

  test("shows an error in place of a formula that does not parse", () => {
    const fragment = renderLatex("$\\frac{1}{$");
    assert.ok(fragment.querySelector("math, .katex-error"));
  });
});
