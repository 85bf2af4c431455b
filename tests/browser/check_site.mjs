// Load every page of the built book in headless Chromium with no network:
// no page errors, no failed or external requests, no broken images, math typeset,
// widgets rendered where a page stores widget state, every internal link resolves;
// a chapter shows at least as many figures as its executed notebook has image outputs
// (counted in _build/jupyter_execute), every image has loaded and has alt text (not a
// file name), no code or output block scrolls sideways at a 1400 px window, solution
// content (sphinx-exercise) is hidden until its dropdown is clicked and shown after,
// and axe-core finds no critical or serious violation in light or dark mode. Also: no
// display equation wider than its column; every figure shown at ≥ MIN_FIGURE_SCALE of
// its drawn size (text drawn at the course's 11 pt stays ≥ 9 px on screen); no link with
// "/./" (launch buttons); the footer's PDF link visible exactly when book.pdf exists.
// A screenshot per page goes to the artefact folder: the first screen, or the whole page
// where the page failed (or with SCREENSHOTS=full).
//
//   node tests/browser/check_site.mjs [_build/html] [artifacts/screenshots] [--shard=I/N]
//   CHECK_SITE_TIMES=1 adds each page's seconds per phase to its line (where the time goes).
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { serve } from "./serve.mjs";

// tts_lib.plotting draws text at READABLE_PT = 11 pt at 100 dpi (15.3 px): a figure shown
// at less than 0.59 of its drawn width would put it below 9 px.
const MIN_FIGURE_SCALE = 9 / (11 * 100 / 72);
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const argv = process.argv.slice(2);
const shardArg = argv.find((a) => a.startsWith("--shard="));
const [positional0, positional1] = argv.filter((a) => !a.startsWith("--"));
const root = path.resolve(positional0 ?? "_build/html");
const shots = path.resolve(positional1 ?? "artifacts/screenshots");
// --shard=I/N: this process checks the I-th of N interleaved parts of the pages (CI runs
// two at once on its two cores); the parts together are every page.
const [shard, shards] = shardArg ? shardArg.slice(8).split("/").map(Number) : [1, 1];
if (!(Number.isInteger(shard) && Number.isInteger(shards) && shard >= 1 && shard <= shards)) {
  console.error(`check_site: --shard must be I/N with 1 <= I <= N, got ${shardArg}`);
  process.exit(2);
}
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
  ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".json": "application/json",
  ".ipynb": "application/json", ".txt": "text/plain", ".md": "text/plain", ".ico": "image/x-icon" };

const { server, base, resolveFile } = await serve(root, TYPES);

// Image outputs per executed notebook, keyed by the page's path without extension.
const executed = path.join(path.dirname(root), "jupyter_execute");
function imageOutputs(rel) {
  const nb = path.join(executed, rel.replace(/\.html$/, ".ipynb"));
  if (!fs.existsSync(nb)) return null;
  const outputs = JSON.parse(fs.readFileSync(nb, "utf8")).cells.flatMap((c) => c.outputs ?? []);
  // myst-nb 1.4 writes a notebook taken from the execution cache without its outputs:
  // then the count is unknown (-1), and the page fails (build from an empty _build).
  if (outputs.length === 0) return -1;
  return outputs.filter((o) => Object.keys(o.data ?? {}).some((k) => k.startsWith("image/"))).length;
}

async function axeSerious(page, mode) {
  await page.evaluate((m) => {
    document.documentElement.dataset.theme = m;
    document.documentElement.dataset.mode = m;
  }, mode);
  await settle(page);   // transitions are off (below): the new colours are final after a frame
  const res = await page.evaluate(async (m) => {
    // dark mode changes colours only: there, the colour rules (light mode runs them all)
    const only = m === "dark" ? { runOnly: { type: "rule", values: ["color-contrast", "link-in-text-block"] } } : {};
    const r = await window.axe.run(document, { resultTypes: ["violations"], ...only });
    return r.violations.filter((v) => ["critical", "serious"].includes(v.impact))
      .map((v) => ({ id: v.id, impact: v.impact, n: v.nodes.length,
        where: v.nodes.slice(0, 3).map((n) => `${n.target.join(" ")} ${(n.failureSummary ?? "").split("\n")[1] ?? ""}`) }));
  }, mode);
  return res.map((v) => `axe ${mode} ${v.impact} ${v.id} (${v.n} nodes): ${v.where.join(" | ")}`);
}

// two animation frames: style changes (theme switch, a dropdown's click) applied and painted
const settle = (page) => page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));
// as Playwright's isVisible: a non-empty box and not visibility: hidden
const VISIBLE = (els) => els.filter((e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden";
}).length;

function htmlPages(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return ["_static", "_sources", "_images", "_downloads", "slides"].includes(e.name) ? [] : htmlPages(p);
    return e.name.endsWith(".html") ? [path.relative(root, p)] : [];
  });
}

const idCache = new Map();
function hasAnchor(file, id) {
  if (!idCache.has(file)) {
    const ids = new Set([...fs.readFileSync(file, "utf8").matchAll(/\s(?:id|name)="([^"]+)"/g)].map((m) => m[1]));
    idCache.set(file, ids);
  }
  return idCache.get(file).has(decodeURIComponent(id));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
fs.mkdirSync(shots, { recursive: true });
const pages = htmlPages(root).sort().filter((_, i) => i % shards === shard - 1);
const hasPdf = fs.existsSync(path.join(root, "book.pdf"));
let failed = 0;
for (const rel of pages) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems = [];
  await page.route("**/*", (route) => {
    const u = new URL(route.request().url());
    if (u.protocol === "data:" || u.protocol === "blob:" || u.hostname === "127.0.0.1") return route.continue();
    problems.push(`external request blocked: ${u.href}`);
    return route.abort();
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  const phases = [];
  let mark = performance.now();
  const lap = (name) => { const now = performance.now(); phases.push(`${name} ${((now - mark) / 1000).toFixed(1)}`); mark = now; };
  await page.goto(`${base}/${rel}`, { waitUntil: "load" });
  await page.waitForLoadState("networkidle").catch(() => {});
  await page.evaluate(async () => { if (window.MathJax?.startup?.promise) await window.MathJax.startup.promise; });
  // no CSS transitions: a theme switch or a dropdown's click takes effect at once, so the
  // checks below wait a frame instead of a transition's length (was 600 + 300 ms each)
  await page.addStyleTag({ content: "*, *::before, *::after { transition: none !important; }" });
  const views = await page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count();
  if (views > 0) {
    await page.waitForSelector(".jupyter-widgets", { state: "attached", timeout: 20000 }).catch(() => {});
    const rendered = await page.locator(".widget-subarea .jupyter-widgets, .jupyter-widgets.widget-container, .widget-interact").count();
    if (rendered === 0) problems.push(`${views} widget view(s) stored but none rendered`);
  }
  const report = await page.evaluate(() => ({
    rawMath: [...document.querySelectorAll(".math")].filter((n) => !n.querySelector("mjx-container"))
      .map((n) => n.textContent.trim().slice(0, 60)),
    broken: [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.getAttribute("src")),
    links: [...document.querySelectorAll("a[href]")].map((a) => a.href),
  }));
  // the footer's PDF link is shown by site.js once its HEAD request for book.pdf answers
  lap("load+math");
  const pdfSettled = await page.waitForFunction(() => {
    const s = document.querySelector(".course-pdf-link");
    return !s || !s.hidden || s.dataset.pdfChecked === "1";
  }, null, { timeout: 20000 }).then(() => true, () => false);
  if (!pdfSettled) problems.push("the footer's PDF link was never checked (site.js: no answer to its HEAD request in 20 s)");
  const layout = await page.evaluate((minScale) => {
    const article = document.querySelector("article.bd-article") ?? document.querySelector("main") ?? document.body;
    const imgs = [...article.querySelectorAll("img")];
    const badAlt = imgs.filter((i) => {
      const alt = (i.getAttribute("alt") ?? "").trim();
      return alt.length < 3 || /\.(png|svg|jpe?g|gif)$/i.test(alt) || alt.startsWith("_images/");
    }).map((i) => i.getAttribute("src"));
    const blocks = [...article.querySelectorAll("pre, div.highlight, div.cell_input, div.cell_output, div.output")];
    const wide = blocks.filter((b) => b.clientWidth > 0 && b.scrollWidth > b.clientWidth + 1)
      .map((b) => `${b.closest(".cell_output") ? "output" : b.closest(".cell_input") ? "code" : "block"} ` +
        `${b.tagName.toLowerCase()}.${[...b.classList].join(".")} ${b.scrollWidth}>${b.clientWidth}: ` +
        b.textContent.trim().slice(0, 50));
    // display equations: the typeset formula fits its column (no sideways scroll inside it)
    const wideMath = [...article.querySelectorAll('mjx-container[display="true"]')]
      .filter((m) => m.offsetParent !== null)
      .map((m) => [m, (m.firstElementChild ?? m).getBoundingClientRect().width, m.parentElement.clientWidth])
      .filter(([, w, room]) => room > 0 && w > room + 1)
      .map(([m, w, room]) => `${Math.round(w)}>${room}: ${(m.querySelector("mjx-assistive-mml")?.textContent ?? "")
        .trim().slice(0, 50)}`);
    const small = imgs.filter((i) => i.closest(".cell_output") && i.complete && i.naturalWidth > 0)
      .map((i) => [i, i.getBoundingClientRect().width / i.naturalWidth])
      .filter(([, s]) => s > 0 && s < minScale)
      .map(([i, s]) => `${(i.getAttribute("alt") ?? "").slice(0, 50)} (shown at ${s.toFixed(2)})`);
    const dotLinks = [...document.querySelectorAll("a[href]")].map((a) => a.getAttribute("href"))
      .filter((h) => h.includes("/./"));
    const pdf = document.querySelector(".course-pdf-link");
    return { figures: imgs.filter((i) => i.complete && i.naturalWidth > 0).length, badAlt, wide, wideMath,
      small, dotLinks, pdfLink: pdf ? !pdf.hidden : null };
  }, MIN_FIGURE_SCALE);
  const expected = imageOutputs(rel);
  if (expected === -1) problems.push("executed notebook has no outputs (cached build): cannot count its figures");
  else if (expected !== null && layout.figures < expected)
    problems.push(`${layout.figures} figures shown, executed notebook has ${expected} image outputs`);
  layout.badAlt.forEach((src) => problems.push(`image without alt text: ${src}`));
  layout.wide.forEach((w) => problems.push(`scrolls sideways at 1400 px: ${w}`));
  layout.wideMath.forEach((w) => problems.push(`equation wider than its column: ${w}`));
  layout.small.forEach((w) => problems.push(`figure shrunk below ${MIN_FIGURE_SCALE.toFixed(2)} of its size: ${w}`));
  layout.dotLinks.forEach((h) => problems.push(`link with /./: ${h}`));
  if (layout.pdfLink !== null && layout.pdfLink !== hasPdf)
    problems.push(`PDF link ${layout.pdfLink ? "shown" : "hidden"} but book.pdf ${hasPdf ? "exists" : "is missing"}`);
  // sphinx-exercise solutions (div.solution, a dropdown): hidden before a click, shown after.
  lap("layout");
  const solutions = page.locator("div.solution");
  const nSol = await solutions.count();
  for (let i = 0; i < nSol; i++) {
    const sol = solutions.nth(i);
    const body = sol.locator(":scope > :not(.admonition-title)");
    const label = (await sol.locator(".admonition-title").first().textContent())?.trim().slice(0, 40);
    const shown = async () => [await body.evaluateAll(VISIBLE), await body.count()];
    const [before, n] = await shown();
    if (n === 0) { problems.push(`solution ${label} has no content`); continue; }
    if (before > 0) problems.push(`solution ${label}: content visible before a click`);
    const opener = sol.locator("button.toggle-button, .admonition-title").first();
    await opener.click();
    await settle(page);
    const [after] = await shown();
    if (after === 0) problems.push(`solution ${label}: content still hidden after a click`);
  }
  lap("solutions");
  await page.addScriptTag({ path: AXE });
  for (const mode of ["light", "dark"]) {
    (await axeSerious(page, mode)).forEach((p) => problems.push(p));
    lap(`axe-${mode}`);
  }
  await page.evaluate(() => { document.documentElement.dataset.theme = "light"; document.documentElement.dataset.mode = "light"; });
  report.rawMath.forEach((m) => problems.push(`math not typeset: ${m}`));
  report.broken.forEach((src) => problems.push(`broken image: ${src}`));
  for (const href of new Set(report.links)) {
    const u = new URL(href);
    if (u.origin !== base) continue;
    const file = resolveFile(u.pathname);
    if (!file) problems.push(`broken link: ${u.pathname}`);
    else if (u.hash.length > 1 && file.endsWith(".html") && !hasAnchor(file, u.hash.slice(1)))
      problems.push(`missing anchor: ${u.pathname}${u.hash}`);
  }
  // the first screen of every page; the whole page where something failed (4 s a chapter)
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, rel.replace(/[\\/]/g, "__").replace(/\.html$/, ".png")),
    fullPage: problems.length > 0 || process.env.SCREENSHOTS === "full" });
  await page.close();
  lap("links+shot");
  failed += problems.length ? 1 : 0;
  const counts = `${layout.figures} figures${expected !== null ? ` of ${expected}` : ""}` +
    `${nSol ? `, ${nSol} solutions` : ""}${views ? `, ${views} widget views` : ""}`;
  const times = process.env.CHECK_SITE_TIMES ? ` [s: ${phases.join(", ")}]` : "";
  console.log(`${problems.length ? "FAIL" : "ok  "} ${rel} (${counts})${times}`);
  problems.forEach((p) => console.log(`       ${p}`));
}
await browser.close();
server.close();
console.log(`${pages.length - failed}/${pages.length} pages passed${shards > 1 ? ` (part ${shard} of ${shards})` : ""}; ` +
  `screenshots in ${shots}`);
process.exit(failed || pages.length === 0 ? 1 : 0);
