// Print every deck that scripts/build_slides.py wrote to a PDF handout (one slide per page),
// with headless Chromium and no network: reveal.js's ?print-pdf view, after MathJax has
// typeset and every image has loaded. Called by `python scripts/build_slides.py --pdf`.
//
//   node scripts/print_slides.mjs _build/html/slides [NAME ...]   (default: every deck of decks.json)
import { chromium } from "playwright-core";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const dir = path.resolve(process.argv[2] ?? "_build/html/slides");
const manifestPath = path.join(dir, "decks.json");
if (!fs.existsSync(manifestPath)) {
  console.error(`print_slides: no ${manifestPath}: run python scripts/build_slides.py first`);
  process.exit(2);
}
const only = process.argv.slice(3);
const decks = JSON.parse(fs.readFileSync(manifestPath, "utf8")).filter((d) => !only.length || only.includes(d.name));
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
  ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2", ".json": "application/json" };
const server = http.createServer((req, res) => {
  const p = path.join(dir, decodeURIComponent(new URL(req.url, "http://127.0.0.1").pathname));
  if (!p.startsWith(dir) || !fs.existsSync(p) || fs.statSync(p).isDirectory()) { res.writeHead(404); res.end(); return; }
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
let failed = 0;
for (const deck of decks) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.route("**/*", (route) =>
    new URL(route.request().url()).hostname === "127.0.0.1" ? route.continue() : route.abort());
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/${deck.html}?print-pdf`, { waitUntil: "load", timeout: 120000 });
  try {
    await page.waitForFunction(() => window.slidesReady === true, null, { timeout: 120000 });
  } catch {
    errors.push("the deck never became ready (MathJax or reveal.js failed to start)");
  }
  await page.evaluate(async () => Promise.all([...document.images].map((i) => i.decode().catch(() => {}))));
  if (errors.length) {
    console.error(`FAIL ${deck.html}: ${errors.join("; ")}`);
    failed += 1;
    await page.close();
    continue;
  }
  const out = path.join(dir, deck.pdf ?? `${deck.name}.pdf`);
  await page.pdf({ path: out, printBackground: true, preferCSSPageSize: true });
  console.log(`${path.relative(process.cwd(), out)}: ${deck.slides} slides`);
  await page.close();
}
await browser.close();
server.close();
process.exit(failed ? 1 : 0);
