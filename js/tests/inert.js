// What "inert" means for rendered received content, checked on the DOM a renderer returns.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { markup } from "./jsdom.js";

/** @type {{name: string, payload: string}[]} */
export const CORPUS = JSON.parse(
  readFileSync(new URL("../../tests/xss_corpus.json", import.meta.url), "utf8"),
);

/** Elements that run, load, submit or restyle something: never in a result. */
const FORBIDDEN_TAGS = new Set([
  "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
  "button", "textarea", "select", "base", "meta", "link", "template", "noscript", "noembed",
  "xmp", "video", "audio", "source", "track", "picture", "foreignobject", "animate", "set",
  "animatemotion", "animatetransform", "feimage", "filter", "portal", "svg:script",
]);
/** Attributes that load or navigate (besides src, href and xlink:href, checked by value). */
const FORBIDDEN_ATTRS = new Set([
  "action", "formaction", "background", "poster", "ping", "data", "codebase", "content",
  "http-equiv", "manifest", "longdesc", "name", "attributename", "values", "to", "from", "by",
]);
/** Attributes shown as text, never loaded (a namespace declaration is a name, not a load). */
const TEXT_ATTRS = new Set(["title", "alt", "aria-label"]);
const LINK = /^(?:https?:\/\/|mailto:)/i;
const RASTER = /^data:image\/(?:png|jpeg|jpg|gif|webp);base64,[a-z0-9+/=\s]*$/i;
const URL_FN = /url\s*\(/i;

/**
 * Fails unless `fragment` holds nothing that runs, loads or navigates by itself: no script,
 * no event handler, no style element, no frame or form, no javascript:/data:text/html/remote
 * URL in any URL-bearing attribute (a link's href may be http(s) or mailto: a click, not a
 * load), only raster data: images, only local SVG references, only prefixed ids.
 * @param {DocumentFragment} fragment
 * @param {string} label
 */
export function assertInert(fragment, label) {
  const where = () => `${label}: ${markup(fragment)}`;
  for (const element of Array.from(fragment.querySelectorAll("*"))) {
    const tag = element.localName.toLowerCase();
    assert.ok(!FORBIDDEN_TAGS.has(tag), `<${tag}> in ${where()}`);
    if (tag === "input") {
      assert.equal(element.getAttribute("type"), "checkbox", where());
      assert.ok(element.hasAttribute("disabled"), where());
    }
    for (const attr of Array.from(element.attributes)) {
      const name = attr.name.toLowerCase();
      const value = attr.value;
      assert.ok(!name.startsWith("on"), `${name} on <${tag}> in ${where()}`);
      assert.ok(!FORBIDDEN_ATTRS.has(name), `${name} on <${tag}> in ${where()}`);
      // srcset and its relatives: only a plain src is ever kept.
      assert.ok(!name.includes("src") || name === "src", `${name} on <${tag}> in ${where()}`);
      if (name === "src") {
        assert.equal(tag, "img", where());
        assert.match(value, RASTER, where());
      } else if (name === "href" || name === "xlink:href") {
        if (tag === "a") assert.match(value, LINK, where());
        else if (tag === "image") assert.ok(RASTER.test(value) || value.startsWith("#"), where());
        else assert.ok(value.startsWith("#"), `${name} on <${tag}> in ${where()}`);
      } else if (!TEXT_ATTRS.has(name) && !name.startsWith("xmlns")) {
        assert.ok(!/:\/\/|(?:javascript|vbscript|data):/i.test(value), `${name} on <${tag}> in ${where()}`);
      }
      if (URL_FN.test(value)) {
        const refs = [...value.matchAll(/url\s*\(\s*['"]?([^'")]*)/gi)].map((m) => m[1]);
        for (const ref of refs) assert.ok(ref.startsWith("#"), `url(${ref}) in ${where()}`);
      }
      if (name === "id") assert.ok(value.startsWith("user-content-"), `id ${value} in ${where()}`);
      if (name === "style") assert.ok(!/[\\@]|expression|image-set/i.test(value), where());
    }
    if (tag === "a" && element.hasAttribute("href")) {
      assert.equal(element.getAttribute("target"), "_blank", where());
      assert.equal(element.getAttribute("rel"), "noopener noreferrer", where());
    }
  }
}
