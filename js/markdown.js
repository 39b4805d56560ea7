// Markdown and math of `text` messages, and `text/latex` outputs, as sanitized DOM fragments.
//
// markdown-it (CommonMark, GFM tables, strikethrough and bare-URL links) with rules of our
// own for task lists, `@mentions`, `$...$` / `$$...$$` math (KaTeX, MathML output: no
// fonts or CSS to load, nothing trusted) and fenced code (highlight.js). Raw HTML in a
// message is shown as text. The HTML markdown-it writes then goes through sanitizeHtml,
// like every other received markup.

import katex from "katex";
import MarkdownIt from "markdown-it";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import julia from "highlight.js/lib/languages/julia";
import markdown from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import r from "highlight.js/lib/languages/r";
import sql from "highlight.js/lib/languages/sql";

import { sanitizeHtml } from "./sanitize.js";

/** @typedef {import("markdown-it").MarkdownIt} MarkdownItInstance */
/** @typedef {import("markdown-it").Token} Token */
/** @typedef {import("markdown-it").StateInline} StateInline */
/** @typedef {import("markdown-it").StateBlock} StateBlock */
/** @typedef {import("markdown-it").StateCore} StateCore */

for (const [name, language] of Object.entries({
  bash,
  javascript,
  json,
  julia,
  markdown,
  python,
  r,
  sql,
})) {
  hljs.registerLanguage(name, language);
}

/** What a mention looks like; the name is the captured group. */
const MENTION_RE = /@([A-Za-z0-9_.-]+)/g;
/** A character that may not come just before a mention (so "ada@example.org" is not one). */
const NAME_CHAR = /[A-Za-z0-9_.-]/;
/** Formulas rendered in one text; later ones are shown as their source. */
export const MAX_FORMULAS = 200;
/** A fence's language, as written after the backticks (its first word). */
const LANG_RE = /^[\w+#.-]+$/;

/**
 * KaTeX's options: MathML only (no fonts, no CSS), nothing trusted (`\href`, `\url`,
 * `\includegraphics`, `\htmlData`... render as plain text), macros bounded and local to
 * one formula, errors shown in place.
 * @param {boolean} displayMode
 * @returns {import("katex").KatexOptions}
 */
function katexOptions(displayMode) {
  return {
    displayMode,
    output: "mathml",
    trust: false,
    throwOnError: false,
    strict: "ignore",
    maxExpand: 1000,
    maxSize: 10,
    macros: {},
    globalGroup: false,
  };
}

/**
 * One formula as MathML markup (sanitized later with the rest).
 * @param {string} tex
 * @param {boolean} displayMode
 * @returns {string}
 */
function renderMath(tex, displayMode) {
  try {
    return katex.renderToString(tex, katexOptions(displayMode));
  } catch {
    // throwOnError: false covers parse errors; anything else is shown as the source.
    return `<code class="jc-math-error">${escapeHtml(tex)}</code>`;
  }
}

/**
 * A math token as MathML, or as its source once a text has had MAX_FORMULAS of them (each
 * costs a KaTeX run and some hundred nodes to sanitize).
 * @param {Token} token
 * @param {boolean} displayMode
 * @param {any} env
 * @returns {string}
 */
function formula(token, displayMode, env) {
  env.jcFormulas = (env.jcFormulas ?? 0) + 1;
  if (env.jcFormulas > MAX_FORMULAS) {
    return `<code class="jc-math-source">${escapeHtml(token.markup + token.content + token.markup)}</code>`;
  }
  return renderMath(token.content, displayMode);
}

/**
 * @param {string} text
 * @returns {string}
 */
function escapeHtml(text) {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/**
 * Inline math: `$x$` (no space just inside the dollars, no digit just after the closing one,
 * no other dollar between them but an escaped one, so "$5 and $10" and "$5 for $x$" keep
 * their prices as text) and `$$x$$` on one line (display).
 * @param {StateInline} state
 * @param {boolean} silent
 * @returns {boolean}
 */
function mathInline(state, silent) {
  const { src, pos, posMax } = state;
  if (src.charCodeAt(pos) !== 0x24 /* $ */) return false;
  const display = src.charCodeAt(pos + 1) === 0x24;
  const open = display ? 2 : 1;
  const start = pos + open;
  if (start >= posMax) return false;
  if (!display && /\s/.test(src[start])) return false;
  const delimiter = display ? "$$" : "$";
  // Whether a dollar closes does not depend on where the formula opened: once a search
  // found no closer up to the end, later openers of this text need not search again
  // (else "$a $a $a ..." would take quadratic time).
  const memo = closerMemo(state.env, src);
  if (start >= memo[delimiter]) return false;
  let end = start;
  for (;;) {
    end = src.indexOf(delimiter, end);
    if (end < 0) memo[delimiter] = Math.min(memo[delimiter], start);
    if (end < 0 || end >= posMax) return false;
    if (src[end - 1] === "\\") {
      end += 1;
      continue;
    }
    // A formula holds no bare dollar: the next one closes it, or the opener is text.
    if (!display && (/\s/.test(src[end - 1]) || /\d/.test(src[end + 1] ?? ""))) return false;
    break;
  }
  if (end === start) return false;
  if (!silent) {
    const token = state.push(display ? "math_display_inline" : "math_inline", "math", 0);
    token.content = src.slice(start, end);
    token.markup = delimiter;
  }
  state.pos = end + open;
  return true;
}

/**
 * For one text, the first position from which no closing "$" and no closing "$$" follow.
 * @param {any} env markdown-it's environment of one render
 * @param {string} src
 * @returns {Record<string, number>}
 */
function closerMemo(env, src) {
  if (env.jcCloserSrc !== src) {
    env.jcCloserSrc = src;
    env.jcCloser = { $: Infinity, $$: Infinity };
  }
  return env.jcCloser;
}

/**
 * Display math on lines of its own: `$$` ... `$$` (the formula may share the lines of its
 * delimiters).
 * @param {StateBlock} state
 * @param {number} startLine
 * @param {number} endLine
 * @param {boolean} silent
 * @returns {boolean}
 */
function mathBlock(state, startLine, endLine, silent) {
  let pos = state.bMarks[startLine] + state.tShift[startLine];
  let max = state.eMarks[startLine];
  if (state.sCount[startLine] - state.blkIndent >= 4) return false;
  if (state.src.slice(pos, pos + 2) !== "$$") return false;
  pos += 2;
  let firstLine = state.src.slice(pos, max);
  let lastLine = "";
  let line = startLine;
  let found = false;
  if (firstLine.trim().endsWith("$$")) {
    firstLine = firstLine.trim().slice(0, -2);
    found = true;
  }
  if (silent) return true;
  // As for inline math: a search that found no closing line before endLine need not be
  // made again from a later line (else many "$$" lines would take quadratic time).
  const memo = blockMemo(state.env, state.src);
  if (!found && startLine >= (memo.get(endLine) ?? Infinity)) return false;
  for (; !found; ) {
    line += 1;
    if (line >= endLine) {
      memo.set(endLine, Math.min(memo.get(endLine) ?? Infinity, startLine));
      break;
    }
    pos = state.bMarks[line] + state.tShift[line];
    max = state.eMarks[line];
    if (pos < max && state.sCount[line] < state.blkIndent) break;
    const text = state.src.slice(pos, max).trim();
    if (text.endsWith("$$")) {
      lastLine = text.slice(0, -2);
      found = true;
    }
  }
  if (!found) return false;
  const middle = line > startLine + 1 ? state.getLines(startLine + 1, line, state.tShift[startLine], true) : "";
  state.line = line + 1;
  const token = state.push("math_block", "math", 0);
  token.block = true;
  token.content = [firstLine, middle, lastLine].filter((part) => part.trim()).join("\n");
  token.markup = "$$";
  token.map = [startLine, state.line];
  return true;
}

/**
 * For one document, by the last line of a block search, the first line from which no
 * closing "$$" line follows.
 * @param {any} env
 * @param {string} src
 * @returns {Map<number, number>}
 */
function blockMemo(env, src) {
  if (env.jcBlockSrc !== src) {
    env.jcBlockSrc = src;
    env.jcBlock = new Map();
  }
  return env.jcBlock;
}

/**
 * GFM task list items: "[ ] " or "[x] " at the start of a list item's first paragraph
 * becomes a read-only checkbox.
 * @param {StateCore} state
 */
function taskLists(state) {
  const tokens = state.tokens;
  for (let i = 2; i < tokens.length; i++) {
    const inline = tokens[i];
    if (inline.type !== "inline" || tokens[i - 1].type !== "paragraph_open") continue;
    if (tokens[i - 2].type !== "list_item_open") continue;
    const first = inline.children?.[0];
    const match = first?.type === "text" ? /^\[([ xX])\][ \t]/.exec(first.content) : null;
    if (!first || !match) continue;
    first.content = first.content.slice(match[0].length);
    const box = new state.Token("html_inline", "", 0);
    const checked = match[1] === " " ? "" : " checked";
    box.content = `<input type="checkbox" class="jc-task-checkbox" disabled${checked}> `;
    inline.children?.unshift(box);
    tokens[i - 2].attrJoin("class", "jc-task-item");
    // The list holding the item.
    for (let j = i - 3; j >= 0; j--) {
      const type = tokens[j].type;
      if ((type === "bullet_list_open" || type === "ordered_list_open") && tokens[j].level === tokens[i - 2].level - 1) {
        if (!String(tokens[j].attrGet("class") ?? "").includes("jc-task-list")) tokens[j].attrJoin("class", "jc-task-list");
        break;
      }
    }
  }
}

/**
 * `@name` in text (not in code, not in a link's text) becomes a mention span.
 * @param {StateCore} state
 */
function mentions(state) {
  for (const block of state.tokens) {
    if (block.type !== "inline" || !block.children) continue;
    /** @type {Token[]} */
    const children = [];
    let linkDepth = 0;
    for (const token of block.children) {
      if (token.type === "link_open") linkDepth += 1;
      if (token.type === "link_close") linkDepth -= 1;
      if (token.type !== "text" || linkDepth > 0 || !token.content.includes("@")) {
        children.push(token);
        continue;
      }
      children.push(...splitMentions(state, token.content));
    }
    block.children = children;
  }
}

/**
 * Text tokens and mention tokens for one run of text.
 * @param {StateCore} state
 * @param {string} text
 * @returns {Token[]}
 */
function splitMentions(state, text) {
  /** @type {Token[]} */
  const out = [];
  let last = 0;
  for (const match of text.matchAll(MENTION_RE)) {
    const at = match.index ?? 0;
    if (at > 0 && NAME_CHAR.test(text[at - 1])) continue;
    // A sentence's full stop is not part of the name.
    const name = match[1].replace(/\.+$/, "");
    if (!name) continue;
    if (at > last) out.push(textToken(state, text.slice(last, at)));
    const span = new state.Token("html_inline", "", 0);
    span.content = `<span class="jc-mention" data-user="${escapeHtml(name)}">@${escapeHtml(name)}</span>`;
    out.push(span);
    last = at + 1 + name.length;
  }
  if (last === 0) return [textToken(state, text)];
  if (last < text.length) out.push(textToken(state, text.slice(last)));
  return out;
}

/**
 * @param {StateCore} state
 * @param {string} content
 * @returns {Token}
 */
function textToken(state, content) {
  const token = new state.Token("text", "", 0);
  token.content = content;
  return token;
}

/**
 * A code block's markup: `<pre class="jc-codeblock" data-lang="..."><code>` with
 * highlight.js spans when the language is known.
 * @param {string} code
 * @param {string} lang
 * @returns {string}
 */
export function codeBlock(code, lang) {
  const known = lang && hljs.getLanguage(lang) ? lang : "";
  const body = known
    ? hljs.highlight(code, { language: known, ignoreIllegals: true }).value
    : escapeHtml(code);
  const dataLang = LANG_RE.test(lang) ? ` data-lang="${escapeHtml(lang.toLowerCase())}"` : "";
  const cls = known ? ` class="hljs language-${escapeHtml(known)}"` : "";
  return `<pre class="jc-codeblock"${dataLang}><code${cls}>${body}</code></pre>\n`;
}

/**
 * Table cells' alignment as classes (markdown-it writes a style attribute).
 * @param {StateCore} state
 */
function tableAlignment(state) {
  for (const token of state.tokens) {
    if (token.type !== "th_open" && token.type !== "td_open") continue;
    const style = token.attrGet("style");
    const match = style ? /text-align:\s*(left|center|right)/.exec(String(style)) : null;
    if (!match) continue;
    token.attrs = (token.attrs ?? []).filter((attr) => attr[0] !== "style");
    token.attrJoin("class", `jc-align-${match[1]}`);
  }
}

/** @returns {MarkdownItInstance} */
function createMarkdown() {
  const md = new MarkdownIt("default", { html: false, linkify: true, breaks: true, typographer: false });
  md.inline.ruler.after("escape", "math_inline", mathInline);
  md.block.ruler.after("blockquote", "math_block", mathBlock, {
    alt: ["paragraph", "reference", "blockquote", "list"],
  });
  md.core.ruler.push("jc_task_lists", taskLists);
  md.core.ruler.push("jc_mentions", mentions);
  md.core.ruler.push("jc_table_alignment", tableAlignment);
  md.renderer.rules.math_inline = (tokens, i, _, env) => formula(tokens[i], false, env);
  md.renderer.rules.math_display_inline = (tokens, i, _, env) => formula(tokens[i], true, env);
  md.renderer.rules.math_block = (tokens, i, _, env) =>
    `<div class="jc-math-display">${formula(tokens[i], true, env)}</div>\n`;
  md.renderer.rules.fence = (tokens, i) => {
    const token = tokens[i];
    const lang = token.info.trim().split(/\s+/)[0] ?? "";
    return codeBlock(token.content, lang);
  };
  md.renderer.rules.code_block = (tokens, i) => codeBlock(tokens[i].content, "");
  return md;
}

/** @type {MarkdownItInstance | null} */
let engine = null;

/**
 * A `text` message's Markdown as a sanitized fragment.
 * @param {string} text
 * @returns {DocumentFragment}
 */
export function renderMarkdown(text) {
  engine ??= createMarkdown();
  return sanitizeHtml(engine.render(String(text ?? ""), {}));
}

/** A dollar that is not escaped: a formula holds none. */
const BARE_DOLLAR = /(?:^|[^\\])\$/;
/** Delimiters a `text/latex` output may wrap its formula in. */
const LATEX_WRAPPERS = [
  /^\$\$([\s\S]*)\$\$$/,
  /^\\\[([\s\S]*)\\\]$/,
  /^\$([\s\S]*)\$$/,
  /^\\\(([\s\S]*)\\\)$/,
];

/**
 * A `text/latex` output (`$$...$$`, `$...$`, `\[...\]`, `\(...\)` or a bare formula or
 * environment) as a sanitized fragment of display math; text with several formulas in it
 * ("the root is $x$ and $y$") is rendered as Markdown.
 * @param {string} text
 * @returns {DocumentFragment}
 */
export function renderLatex(text) {
  const source = String(text ?? "").trim();
  let tex = source;
  for (const wrapper of LATEX_WRAPPERS) {
    const match = wrapper.exec(tex);
    if (match) {
      tex = match[1];
      break;
    }
  }
  if (BARE_DOLLAR.test(tex)) return renderMarkdown(source);
  return sanitizeHtml(`<div class="jc-math-display">${renderMath(tex, true)}</div>`);
}
