// Load every page of the built book in headless Chromium with no network:
// no page errors, no failed or external requests, no broken images, math typeset,
// widgets rendered where a page stores widget state, every internal link resolves.
// A full-page screenshot per page goes to the artefact folder.
//
//   node tests/browser/check_site.mjs [_build/html] [artifacts/screenshots]
import { chromium } from "playwright-core";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const root = path.resolve(process.argv[2] ?? "_build/html");
const shots = path.resolve(process.argv[3] ?? "artifacts/screenshots");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
  ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".json": "application/json",
  ".ipynb": "application/json", ".txt": "text/plain", ".md": "text/plain", ".ico": "image/x-icon" };

function resolveFile(urlPath) {
  let p = path.join(root, decodeURIComponent(urlPath));
  if (!p.startsWith(root)) return null;
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) p = path.join(p, "index.html");
  return fs.existsSync(p) ? p : null;
}

const server = http.createServer((req, res) => {
  const file = resolveFile(new URL(req.url, "http://127.0.0.1").pathname);
  if (!file) { res.writeHead(404); res.end("not found"); return; }
  res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}`;

function htmlPages(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return ["_static", "_sources", "_images", "_downloads"].includes(e.name) ? [] : htmlPages(p);
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
const pages = htmlPages(root).sort();
let failed = 0;
for (const rel of pages) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  await page.route("**/*", (route) => {
    const u = new URL(route.request().url());
    if (u.protocol === "data:" || u.protocol === "blob:" || u.hostname === "127.0.0.1") return route.continue();
    problems.push(`external request blocked: ${u.href}`);
    return route.abort();
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  await page.goto(`${base}/${rel}`, { waitUntil: "load" });
  await page.waitForLoadState("networkidle").catch(() => {});
  await page.evaluate(async () => { if (window.MathJax?.startup?.promise) await window.MathJax.startup.promise; });
  const views = await page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count();
  if (views > 0) {
    await page.waitForSelector(".jupyter-widgets", { timeout: 20000 }).catch(() => {});
    const rendered = await page.locator(".widget-subarea .jupyter-widgets, .jupyter-widgets.widget-container, .widget-interact").count();
    if (rendered === 0) problems.push(`${views} widget view(s) stored but none rendered`);
  }
  const report = await page.evaluate(() => ({
    rawMath: [...document.querySelectorAll(".math")].filter((n) => !n.querySelector("mjx-container"))
      .map((n) => n.textContent.trim().slice(0, 60)),
    broken: [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.getAttribute("src")),
    links: [...document.querySelectorAll("a[href]")].map((a) => a.href),
  }));
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
  await page.screenshot({ path: path.join(shots, rel.replace(/[\\/]/g, "__").replace(/\.html$/, ".png")), fullPage: true });
  await page.close();
  failed += problems.length ? 1 : 0;
  console.log(`${problems.length ? "FAIL" : "ok  "} ${rel}${views ? ` (${views} widget views)` : ""}`);
  problems.forEach((p) => console.log(`       ${p}`));
}
await browser.close();
server.close();
console.log(`${pages.length - failed}/${pages.length} pages passed; screenshots in ${shots}`);
process.exit(failed || pages.length === 0 ? 1 : 0);
