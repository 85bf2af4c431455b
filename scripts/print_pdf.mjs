// Print a single-page HTML build of the book to PDF with headless Chromium (no network):
// waits for MathJax to finish and for every image; worked solutions (sphinx-exercise)
// stay collapsed to their titles, as do hidden code cells, as on the site (an appendix
// of solutions was tried: Chromium dropped the end of the document); in the print layout scales display equations and
// tables wider than the column down to it and refuses to print when any code, output,
// equation or table block is still wider than its column (it would be cut at the page
// edge); then prints A4 with links kept (cross-references stay clickable).
//
//   node scripts/print_pdf.mjs _build/singlehtml book/intro.html _build/pdf/book.pdf
import { chromium } from "playwright-core";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const [dir, input, output] = process.argv.slice(2);
if (!dir || !input || !output) {
  console.error("usage: node scripts/print_pdf.mjs SINGLEHTML_DIR PAGE OUTPUT_PDF");
  process.exit(2);
}
const root = path.resolve(dir);
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
  ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf" };
// The single page's links are relative to the build root even when the root document
// lives in a subfolder (book/intro.html): serve it at the root as /print.html.
const server = http.createServer((req, res) => {
  const urlPath = decodeURIComponent(new URL(req.url, "http://127.0.0.1").pathname);
  const p = urlPath === "/print.html" ? path.join(root, input) : path.join(root, urlPath);
  if (!p.startsWith(root) || !fs.existsSync(p) || fs.statSync(p).isDirectory()) {
    res.writeHead(404); res.end(); return;
  }
  res.writeHead(200, { "content-type": TYPES[path.extname(p)] ?? "application/octet-stream" });
  fs.createReadStream(p).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
await page.route("**/*", (route) =>
  new URL(route.request().url()).hostname === "127.0.0.1" ? route.continue() : route.abort());
const t0 = performance.now();
const secs = () => ((performance.now() - t0) / 1000).toFixed(0);
const times = [];
await page.goto(`${base}/print.html`, { waitUntil: "load", timeout: 120000 });
times.push(`loaded ${secs()} s`);
// No wait for "network idle": the whole book's page never reaches it, and the wait ran out
// its 30 s doing nothing. MathJax's promise, the fonts and the images are awaited instead.
const report = await page.evaluate(async () => {
  if (window.MathJax?.startup?.promise) await window.MathJax.startup.promise;
  await document.fonts.ready;
  // dropdowns open, except the worked solutions: they print collapsed (title only)
  document.querySelectorAll(".toggle-hidden:not(.solution)").forEach((e) => e.classList.remove("toggle-hidden"));
  document.querySelectorAll("div.solution > .admonition-title").forEach((title) => {
    const note = document.createElement("em");
    note.textContent = " (worked solution: in the notebook and on the website)";
    title.appendChild(note);
    // the dropdown hides its content with opacity and zero height: drop it from print
    title.parentElement.querySelectorAll(":scope > :not(.admonition-title)")
      .forEach((e) => { e.style.display = "none"; });
  });
  document.querySelectorAll("img[loading=lazy]").forEach((i) => { i.loading = "eager"; });
  await Promise.all([...document.images].map((i) => i.decode().catch(() => {})));
  return {
    raw: [...document.querySelectorAll(".math")].filter((n) => !n.querySelector("mjx-container")).length,
    broken: [...document.images].filter((i) => i.naturalWidth === 0).map((i) => i.src),
    images: document.images.length,
  };
});
times.push(`typeset ${secs()} s`);
if (report.raw || report.broken.length) {
  console.error(`not ready to print: ${report.raw} math blocks untypeset, broken images ${report.broken}`);
  process.exit(1);
}
await page.emulateMedia({ media: "print" });
await page.setViewportSize({ width: 700, height: 1000 });  // about the A4 column: 182 mm at 96 dpi
const wide = await page.evaluate(() => {
  const article = document.querySelector("article.bd-article") ?? document.querySelector("main") ?? document.body;
  // display equations and tables wider than their column are scaled down to it
  for (const el of article.querySelectorAll('mjx-container[display="true"], table')) {
    const room = el.parentElement.clientWidth;
    if (room > 0 && el.scrollWidth > room + 1) el.style.zoom = String(Math.max(0.5, room / el.scrollWidth));
  }
  const blocks = [...article.querySelectorAll('pre, mjx-container[display="true"], table')];
  return blocks.filter((b) => b.offsetParent !== null && b.getBoundingClientRect().right >
      (b.parentElement.getBoundingClientRect().right + 2))
    .map((b) => `${b.tagName.toLowerCase()}: ${b.textContent.trim().slice(0, 60)}`);
});
if (wide.length) {
  console.error(`${wide.length} block(s) wider than the printed column (would be cut):\n  ${wide.join("\n  ")}`);
  process.exit(1);
}
times.push(`laid out ${secs()} s`);
fs.mkdirSync(path.dirname(path.resolve(output)), { recursive: true });
await page.pdf({ path: output, format: "A4", printBackground: true, outline: true, tagged: true,
  margin: { top: "16mm", bottom: "16mm", left: "14mm", right: "14mm" },
  displayHeaderFooter: true, headerTemplate: "<span></span>",
  footerTemplate: '<div style="font-size:8px;width:100%;text-align:center"><span class="pageNumber"></span></div>' });
await browser.close();
server.close();
times.push(`printed ${secs()} s`);
console.log(`${output}: ${report.images} images, math typeset, nothing wider than the column ` +
  `(${times.join(", ")})`);
