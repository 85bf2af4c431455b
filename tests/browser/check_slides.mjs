// Open every lecture deck that scripts/build_slides.py wrote, in headless Chromium with no
// network (every non-loopback request is aborted and reported), and check that
// * the deck starts (MathJax typesets, then reveal.js lays it out) with no page error, no
//   console error, no failed request and no HTTP error;
// * it has at least MIN_SLIDES slides, as many as decks.json says, and a title slide;
// * every formula is typeset: no raw TeX delimiters left in the text, no MathJax error node;
// * every image has loaded, has alt text, and the deck shows as many figures as decks.json
//   says (which is checked against the executed notebook's image outputs when present);
// * no slide's content runs past the bottom of the 1280 x 720 slide;
// * every link inside the slides folder resolves (and ../book/ links, when the site is built);
// * axe-core finds no critical or serious accessibility violation on the title slide;
// * the PDF handout, when built, is a PDF with one page per slide.
// A screenshot of the title slide and of the first figure slide of each deck goes to the
// artefact folder (all slides with SLIDES_SHOTS=all).
//
//   node tests/browser/check_slides.mjs [_build/html/slides] [artifacts/slides]
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { serve } from "./serve.mjs";

const MIN_SLIDES = 8;
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const dir = path.resolve(process.argv[2] ?? "_build/html/slides");
const shots = path.resolve(process.argv[3] ?? "artifacts/slides");
const root = path.dirname(dir); // the site (serves ../book/ links when the book is built)
const manifestPath = path.join(dir, "decks.json");
if (!fs.existsSync(manifestPath)) {
  console.error(`check_slides: no ${manifestPath}: run python scripts/build_slides.py first`);
  process.exit(2);
}
const decks = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
const onDisk = fs.readdirSync(dir).filter((f) => f.endsWith(".html") && f !== "index.html").sort();
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
  ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2", ".json": "application/json",
  ".pdf": "application/pdf" };

const { server, base, resolveFile } = await serve(root, TYPES);
const slidesUrl = `${base}/${path.basename(dir)}`;
const bookBuilt = fs.existsSync(path.join(root, "book"));

// image outputs of the executed notebook (the book build's copy), or null when absent
function imageOutputs(name) {
  const nb = path.join(path.dirname(root), "jupyter_execute", "book", `${name}.ipynb`);
  if (!fs.existsSync(nb)) return null;
  const outputs = JSON.parse(fs.readFileSync(nb, "utf8")).cells.flatMap((c) => c.outputs ?? []);
  if (outputs.length === 0) return null; // a copy taken from the execution cache has no outputs
  return outputs.filter((o) => Object.keys(o.data ?? {}).some((k) => k.startsWith("image/"))).length;
}

function pdfPages(file) {
  const bytes = fs.readFileSync(file);
  if (bytes.subarray(0, 5).toString("latin1") !== "%PDF-") return -1;
  // the page tree's root counts every page: the largest /Count of a /Type /Pages object
  const counts = bytes.toString("latin1").split("endobj").filter((o) => /\/Type\s*\/Pages\b/.test(o))
    .map((o) => Number((o.match(/\/Count\s+(\d+)/) ?? [0, 0])[1]));
  return counts.length ? Math.max(...counts) : (bytes.toString("latin1").match(/\/Type\s*\/Page[^s]/g) ?? []).length;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
fs.mkdirSync(shots, { recursive: true });
let failed = 0;
const listed = new Set(decks.map((d) => d.html));
const unlisted = onDisk.filter((f) => !listed.has(f));
if (unlisted.length) { console.log(`FAIL decks not in decks.json: ${unlisted.join(", ")}`); failed += 1; }
if (decks.length === 0) { console.log("FAIL decks.json lists no deck"); failed += 1; }

for (const deck of decks) {
  const problems = [];
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.route("**/*", (route) => {
    const u = new URL(route.request().url());
    if (u.protocol === "data:" || u.protocol === "blob:" || u.hostname === "127.0.0.1") return route.continue();
    problems.push(`external request blocked: ${u.href}`);
    return route.abort();
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("requestfailed", (r) => {
    if (new URL(r.url()).hostname === "127.0.0.1") problems.push(`request failed: ${r.url()}`);
  });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  const t0 = Date.now();
  await page.goto(`${slidesUrl}/${deck.html}`, { waitUntil: "load", timeout: 120000 });
  const ready = await page.waitForFunction(() => window.slidesReady === true, null, { timeout: 120000 })
    .then(() => true, () => false);
  if (!ready) problems.push("the deck never became ready (MathJax or reveal.js did not start)");
  const startMs = Date.now() - t0;
  const report = ready ? await page.evaluate(async () => {
    await Promise.all([...document.images].map((i) => i.decode().catch(() => {})));
    const slides = window.Reveal.getSlides();
    const text = document.querySelector(".reveal .slides").innerText;
    return {
      total: window.Reveal.getTotalSlides(),
      titleSlide: !!document.querySelector("section.title-slide h1"),
      formulas: document.querySelectorAll("mjx-container").length,
      mathErrors: [...document.querySelectorAll("mjx-merror, [data-mjx-error]")]
        .map((e) => e.getAttribute("data-mjx-error") ?? e.textContent).slice(0, 5),
      rawTex: (text.match(/\\[([]|\\[a-zA-Z]+\{|\$[^$\s][^$]*\$/g) ?? []).slice(0, 5),
      images: [...document.images].map((i) => ({ src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0,
        alt: (i.getAttribute("alt") ?? "").trim() })),
      figureSlides: slides.map((s, i) => (s.classList.contains("figure-slide") ? i : -1)).filter((i) => i >= 0),
      links: [...document.querySelectorAll(".reveal a[href]")].map((a) => a.href),
    };
  }) : null;
  if (report) {
    if (report.total < MIN_SLIDES) problems.push(`${report.total} slides, fewer than ${MIN_SLIDES}`);
    if (report.total !== deck.slides) problems.push(`${report.total} slides, decks.json says ${deck.slides}`);
    if (!report.titleSlide) problems.push("no title slide");
    if (report.formulas === 0) problems.push("no typeset formula at all");
    report.mathErrors.forEach((e) => problems.push(`MathJax error: ${e}`));
    report.rawTex.forEach((t) => problems.push(`raw TeX in the text: ${t}`));
    report.images.filter((i) => !i.ok).forEach((i) => problems.push(`broken image: ${i.src}`));
    report.images.filter((i) => i.alt.length < 3 || /\.(png|svg|jpe?g)$/i.test(i.alt))
      .forEach((i) => problems.push(`image without alt text: ${i.src}`));
    if (report.images.length !== deck.figures)
      problems.push(`${report.images.length} images, decks.json says ${deck.figures} figures`);
    if (deck.executed === false) problems.push("built --text-only: no figures or claims");
    const outputs = imageOutputs(deck.name);
    if (outputs !== null && outputs > 0 && deck.figures === 0)
      problems.push(`no figure, the executed notebook has ${outputs} image outputs`);
    if (outputs !== null && deck.figures > outputs)
      problems.push(`${deck.figures} figures, more than the ${outputs} image outputs of the executed notebook`);
    for (const href of new Set(report.links)) {
      const u = new URL(href);
      if (u.origin !== base) { problems.push(`external link: ${href}`); continue; }
      const inSlides = u.pathname.startsWith(`/${path.basename(dir)}/`);
      if (!inSlides && !bookBuilt) continue;
      if (!resolveFile(u.pathname)) {
        if (!(u.pathname.endsWith(".pdf") && !deck.pdf)) problems.push(`broken link: ${u.pathname}`);
      }
    }
    // overflow: show each slide and measure its content against the slide's height
    const overflow = await page.evaluate(async () => {
      const R = window.Reveal;
      const { height } = R.getConfig();
      const out = [];
      const slides = R.getSlides();
      for (let i = 0; i < slides.length; i++) {
        const idx = R.getIndices(slides[i]);
        R.slide(idx.h, idx.v);
        await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
        const s = slides[i];
        const scale = R.getScale();
        const top = s.getBoundingClientRect().top;
        let bottom = top;
        for (const e of s.children) {
          if (e.matches("aside.notes")) continue;
          const r = e.getBoundingClientRect();
          if (r.height > 0) bottom = Math.max(bottom, r.bottom);
        }
        const used = (bottom - top) / scale;
        const name = (s.querySelector("h1, h2, h3")?.textContent ?? "").trim().slice(0, 50);
        if (used > height + 1) out.push(`slide ${i + 1} ("${name}") is ${Math.round(used)} px tall, the slide ${height} px`);
        // sideways: anything visible (formulas, images, text blocks) past the slide's edges
        const sr = s.getBoundingClientRect();
        s.querySelectorAll("mjx-math, img, h1, h2, h3, p, li, figcaption").forEach((e) => {
          if (e.closest("aside.notes") || e.closest("mjx-assistive-mml")) return;
          const r = e.getBoundingClientRect();
          if (r.width > 0 && (r.right > sr.right + 2 * scale || r.left < sr.left - 2 * scale))
            out.push(`slide ${i + 1} ("${name}"): ${e.tagName.toLowerCase()} sticks out ` +
              `${Math.round(Math.max(r.right - sr.right, sr.left - r.left) / scale)} px sideways`);
        });
      }
      R.slide(0, 0);
      return out;
    });
    overflow.forEach((o) => problems.push(o));
    await page.addScriptTag({ path: AXE });
    const axe = await page.evaluate(async () => {
      const r = await window.axe.run(document.querySelector(".reveal .slides section.present"),
        { resultTypes: ["violations"] });
      return r.violations.filter((v) => ["critical", "serious"].includes(v.impact))
        .map((v) => `${v.impact} ${v.id} (${v.nodes.length} nodes): ${v.nodes[0]?.target.join(" ")}`);
    });
    axe.forEach((a) => problems.push(`axe ${a}`));
    const shotAll = process.env.SLIDES_SHOTS === "all";
    const wanted = shotAll ? [...Array(report.total).keys()] : [0, ...report.figureSlides.slice(0, 1)];
    for (const i of wanted) {
      await page.evaluate((k) => { const s = window.Reveal.getSlides()[k]; const x = window.Reveal.getIndices(s);
        window.Reveal.slide(x.h, x.v); }, i);
      await page.waitForTimeout(50);
      await page.screenshot({ path: path.join(shots, `${deck.name}-${String(i + 1).padStart(2, "0")}.png`) });
    }
  }
  let pdfNote = "no PDF";
  if (deck.pdf) {
    const file = path.join(dir, deck.pdf);
    if (!fs.existsSync(file)) problems.push(`PDF handout missing: ${deck.pdf}`);
    else {
      const pages = pdfPages(file);
      if (pages === -1) problems.push(`${deck.pdf} is not a PDF`);
      else if (pages !== deck.slides) problems.push(`${deck.pdf} has ${pages} pages, the deck ${deck.slides} slides`);
      pdfNote = `PDF ${pages} pages`;
    }
  }
  await page.close();
  failed += problems.length ? 1 : 0;
  const counts = report ? `${report.total} slides, ${report.images.length} figures, ${report.formulas} formulas, ` +
    `${pdfNote}, ready in ${(startMs / 1000).toFixed(1)} s` : "not started";
  console.log(`${problems.length ? "FAIL" : "ok  "} ${deck.html} (${counts})`);
  problems.forEach((p) => console.log(`       ${p}`));
}
await browser.close();
server.close();
console.log(`${decks.length - (failed && unlisted.length ? failed - 1 : failed)}/${decks.length} decks passed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
