// The one way received HTML reaches the page: DOMPurify with an allowlist, returning DOM
// fragments (a string is never parsed into the live document).
//
// Policy, beyond DOMPurify's own defences (scripts, event handlers, mutation XSS):
// - tags and attributes come from the lists below; no forms, no style elements, no frames,
//   objects or embeds, no SVG animation, no foreignObject;
// - links keep only absolute http(s) and mailto URLs and open in a new tab with
//   rel="noopener noreferrer"; any other href (javascript:, data:, relative) is dropped;
// - images keep only `data:` URLs of raster types; anything else becomes its alt text;
// - SVG references (`href`, `xlink:href`, `url(...)`) may only point inside the fragment
//   (`#id`); `id`s are prefixed so that received markup cannot clobber the page's names;
// - `style` attributes keep a few layout and colour properties, never a url() or other
//   function that loads or runs anything.
// Nothing in the result can make the browser load a URL by itself.

import DOMPurify from "dompurify";

/** Tags of received HTML (Markdown's output, `text/html` outputs). */
const HTML_TAGS = [
  "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite", "code", "col",
  "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure",
  "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "input", "ins", "kbd", "li", "mark",
  "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "small", "span", "strike", "strong",
  "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt",
  "u", "ul", "var", "wbr",
];

/** MathML, as KaTeX writes it with `output: "mathml"`. */
const MATHML_TAGS = [
  "math", "annotation", "menclose", "merror", "mfrac", "mi", "mmultiscripts", "mn", "mo",
  "mover", "mpadded", "mphantom", "mprescripts", "mroot", "mrow", "ms", "mspace", "msqrt",
  "mstyle", "msub", "msubsup", "msup", "mtable", "mtd", "mtext", "mtr", "munder",
  "munderover", "none", "semantics",
];

/** Static SVG (plots): shapes, text, gradients, clipping; no animation, filters or foreign content. */
const SVG_TAGS = [
  "svg", "a", "circle", "clippath", "defs", "desc", "ellipse", "g", "image", "line",
  "lineargradient", "marker", "mask", "path", "pattern", "polygon", "polyline",
  "radialgradient", "rect", "stop", "symbol", "text", "textpath", "title", "tspan", "use",
];

const HTML_ATTRS = [
  "abbr", "align", "alt", "checked", "class", "colspan", "datetime", "dir", "disabled",
  "headers", "height", "href", "id", "lang", "open", "rowspan", "scope", "span", "src", "start",
  "style", "title", "type", "valign", "width", "data-lang", "data-user", "aria-hidden",
  "aria-label", "role",
];

const MATHML_ATTRS = [
  "accent", "accentunder", "columnalign", "columnlines", "columnspacing", "depth", "display",
  "displaystyle", "encoding", "fence", "form", "frame", "largeop", "linethickness", "lspace",
  "mathbackground", "mathcolor", "mathsize", "mathvariant", "maxsize", "minsize",
  "movablelimits", "notation", "rowalign", "rowlines", "rowspacing", "rspace", "scriptlevel",
  "separator", "stretchy", "symmetric", "voffset", "xmlns",
];

const SVG_ATTRS = [
  "clip-path", "clip-rule", "clippathunits", "color", "cx", "cy", "d", "dominant-baseline",
  "dx", "dy", "fill", "fill-opacity", "fill-rule", "font-family", "font-size", "font-style",
  "font-weight", "fx", "fy", "gradienttransform", "gradientunits", "letter-spacing",
  "marker-end", "marker-mid", "marker-start", "markerheight", "markerunits", "markerwidth",
  "mask", "maskcontentunits", "maskunits", "offset", "opacity", "orient", "patterncontentunits",
  "patterntransform", "patternunits", "points", "preserveaspectratio", "r", "refx", "refy",
  "rx", "ry", "shape-rendering", "spreadmethod", "stop-color", "stop-opacity", "stroke",
  "stroke-dasharray", "stroke-dashoffset", "stroke-linecap", "stroke-linejoin",
  "stroke-miterlimit", "stroke-opacity", "stroke-width", "text-anchor", "text-rendering",
  "transform", "vector-effect", "version", "viewbox", "visibility", "x", "x1", "x2",
  "xlink:href", "xml:space", "xmlns:xlink", "y", "y1", "y2",
];

/**
 * CSS properties a `style` attribute may keep: colour, type, borders and table layout.
 * Nothing that positions or moves a box (position, margin, transform, text-indent), so
 * received markup cannot draw over the widget or the page.
 */
const STYLE_PROPERTIES = new Set([
  "background-color", "border", "border-bottom", "border-collapse", "border-color",
  "border-left", "border-right", "border-spacing", "border-style", "border-top",
  "border-width", "clip-path", "clip-rule", "color", "dominant-baseline", "fill",
  "fill-opacity", "fill-rule", "font", "font-family", "font-size", "font-stretch",
  "font-style", "font-variant", "font-weight", "height", "letter-spacing", "line-height",
  "marker-end", "marker-mid", "marker-start", "mask", "max-height", "max-width", "min-height",
  "min-width", "opacity", "padding", "padding-bottom", "padding-left", "padding-right",
  "padding-top", "paint-order", "stop-color", "stop-opacity", "stroke", "stroke-dasharray",
  "stroke-dashoffset", "stroke-linecap", "stroke-linejoin", "stroke-miterlimit",
  "stroke-opacity", "stroke-width", "text-align", "text-anchor", "text-decoration",
  "text-transform", "vertical-align", "visibility", "white-space", "width", "word-break",
  "word-spacing",
]);
/** A declaration's value, functions taken out: words, numbers, colours, quoted names. */
const STYLE_VALUE = /^[-\w\s#%.,+/!'"]*$/;
const STYLE_FUNCTION = /([-\w]*)\(([^()]*)\)/g;
const STYLE_FUNCTIONS = new Set(["rgb", "rgba", "hsl", "hsla", "calc"]);

/** A link's target: absolute http(s) or mailto. */
const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
/** An image's source: base64 data of a raster type. */
const RASTER_DATA_URL = /^data:image\/(?:png|jpeg|jpg|gif|webp);base64,[a-z0-9+/=\s]*$/i;
/** A reference inside the same fragment. */
const LOCAL_REF = /^#[-\w.:]+$/;
const URL_FUNCTION = /url\s*\(\s*(['"]?)(.*?)\1\s*\)/gi;
const URL_FN_START = /url\s*\(/i;
/** Received ids get this prefix so they never shadow the page's own names. */
const ID_PREFIX = "user-content-";
/** Attributes that carry a reference to another element or resource. */
const REF_ATTRS = ["href", "xlink:href"];

const SVG_NS = "http://www.w3.org/2000/svg";
const XLINK_NS = "http://www.w3.org/1999/xlink";

/**
 * `style` with only allowed properties and harmless values, or "" when nothing is left.
 * @param {string} style
 * @returns {string}
 */
export function cleanStyle(style) {
  if (/[\\<>@]|\/\*|&#/.test(style)) return "";
  const kept = [];
  for (const declaration of style.split(";")) {
    const colon = declaration.indexOf(":");
    if (colon < 0) continue;
    const property = declaration.slice(0, colon).trim().toLowerCase();
    const value = declaration.slice(colon + 1).trim();
    if (!STYLE_PROPERTIES.has(property) || !value) continue;
    let plain = value;
    let allowed = true;
    // Innermost functions first, so that calc(1px + rgb(...)) is checked through.
    for (let before = ""; before !== plain; ) {
      before = plain;
      plain = plain.replace(STYLE_FUNCTION, (_, name, args) => {
        const fn = name.toLowerCase();
        // url() only to an element of the same fragment (an SVG gradient or clip path).
        if (fn === "url") allowed &&= LOCAL_REF.test(args.trim().replace(/^(['"])(.*)\1$/, "$2"));
        else if (!STYLE_FUNCTIONS.has(fn)) allowed = false;
        return ` ${fn === "url" ? "" : args} `;
      });
    }
    const quotes = (plain.match(/'/g)?.length ?? 0) % 2 + (plain.match(/"/g)?.length ?? 0) % 2;
    if (allowed && quotes === 0 && STYLE_VALUE.test(plain)) kept.push(`${property}: ${value}`);
  }
  return kept.join("; ");
}

/**
 * Whether `href` is a link the user may follow: absolute http(s) or mailto.
 * @param {string} href
 * @returns {boolean}
 */
export function isSafeLink(href) {
  try {
    return LINK_PROTOCOLS.has(new URL(href.trim()).protocol);
  } catch {
    return false; // relative or malformed
  }
}

/**
 * Whether `src` is an image that loads nothing: a base64 `data:` URL of a raster type.
 * @param {string} src
 * @returns {boolean}
 */
export function isSafeImage(src) {
  return RASTER_DATA_URL.test(src.trim());
}

/**
 * `value` with every url(...) a local `#id` reference (prefixed), or null when one is not.
 * @param {string} value
 * @returns {string | null}
 */
function localUrls(value) {
  let safe = true;
  const result = value.replace(URL_FUNCTION, (_, quote, ref) => {
    if (!LOCAL_REF.test(ref)) safe = false;
    return `url(${quote}#${ID_PREFIX}${ref.slice(1)}${quote})`;
  });
  // A url( that the pattern did not recognise (odd quoting, escapes) is refused too.
  const left = result.replace(URL_FUNCTION, "");
  return safe && !URL_FN_START.test(left) ? result : null;
}

/**
 * The policy on one element, after DOMPurify kept its allowed attributes.
 * @param {Element} node
 */
function enforce(node) {
  const tag = node.localName.toLowerCase();
  const inSvg = node.namespaceURI === SVG_NS;
  if (tag === "input") {
    // Only the read-only checkbox of a task list item.
    if ((node.getAttribute("type") ?? "").toLowerCase() !== "checkbox") {
      node.remove();
      return;
    }
    node.setAttribute("disabled", "");
  }
  for (const attr of Array.from(node.attributes)) {
    const name = attr.name.toLowerCase();
    const value = attr.value;
    if (name === "id") {
      // Always, like the references below, so that "#x" still names id "x".
      attr.value = ID_PREFIX + value;
    } else if (REF_ATTRS.includes(name)) {
      let keep = false;
      if (tag === "a") keep = isSafeLink(value);
      else if (tag === "image" && inSvg) keep = isSafeImage(value) || LOCAL_REF.test(value);
      else if (inSvg) keep = LOCAL_REF.test(value);
      if (!keep) node.removeAttributeNode(attr);
      else if (LOCAL_REF.test(value)) attr.value = `#${ID_PREFIX}${value.slice(1)}`;
    } else if (name === "src") {
      // Only an image's, and only raster data (finish() turns any other into its alt text).
      if (tag !== "img") node.removeAttributeNode(attr);
    } else if (name === "style") {
      const local = URL_FN_START.test(value) ? localUrls(value) : value;
      const style = local === null ? "" : cleanStyle(local);
      if (style) attr.value = style;
      else node.removeAttributeNode(attr);
    } else if (URL_FN_START.test(value)) {
      const local = localUrls(value);
      if (local === null) node.removeAttributeNode(attr);
      else attr.value = local;
    }
  }
  if (tag === "a") {
    if (node.hasAttribute("href") || node.hasAttributeNS(XLINK_NS, "href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  }
}

/** @type {import("dompurify").DOMPurify | null} */
let purifier = null;

/**
 * The DOMPurify instance with this module's hooks, made on first use (in Node, tests
 * install a DOM as `globalThis.window` first).
 * @returns {import("dompurify").DOMPurify}
 */
function getPurifier() {
  if (purifier === null) {
    const instance = DOMPurify(/** @type {any} */ (globalThis).window);
    if (!instance.isSupported) throw new Error("sanitize.js needs a DOM (window.document)");
    instance.addHook("afterSanitizeAttributes", (node) => {
      if (node.nodeType === 1) enforce(/** @type {Element} */ (node));
    });
    purifier = instance;
  }
  return purifier;
}

/**
 * Images that would load something become their alt text.
 * @param {DocumentFragment} fragment
 * @returns {DocumentFragment}
 */
function finish(fragment) {
  for (const img of Array.from(fragment.querySelectorAll("img"))) {
    if (!isSafeImage(img.getAttribute("src") ?? "")) {
      const alt = img.getAttribute("alt") ?? "";
      img.replaceWith(img.ownerDocument.createTextNode(alt));
    }
  }
  return fragment;
}

/** @type {import("dompurify").Config & {RETURN_DOM_FRAGMENT: true}} */
const COMMON = {
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOW_UNKNOWN_PROTOCOLS: false,
  SAFE_FOR_TEMPLATES: false,
  RETURN_DOM_FRAGMENT: true,
};

/**
 * Received HTML as a sanitized fragment, ready to append.
 * @param {string} html
 * @returns {DocumentFragment}
 */
export function sanitizeHtml(html) {
  const fragment = getPurifier().sanitize(String(html), {
    ...COMMON,
    ALLOWED_TAGS: [...HTML_TAGS, ...MATHML_TAGS, ...SVG_TAGS],
    ALLOWED_ATTR: [...HTML_ATTRS, ...MATHML_ATTRS, ...SVG_ATTRS],
  });
  return finish(fragment);
}

/**
 * A received SVG image (an `image/svg+xml` output) as a sanitized fragment holding its
 * `<svg>` elements only.
 * @param {string} svg
 * @returns {DocumentFragment}
 */
export function sanitizeSvg(svg) {
  const fragment = getPurifier().sanitize(String(svg), {
    ...COMMON,
    ALLOWED_TAGS: SVG_TAGS,
    ALLOWED_ATTR: ["class", "height", "id", "style", "width", "href", ...SVG_ATTRS],
  });
  for (const child of Array.from(fragment.childNodes)) {
    if (!(child.nodeType === 1 && /** @type {Element} */ (child).localName === "svg")) {
      child.remove();
    }
  }
  return finish(fragment);
}
