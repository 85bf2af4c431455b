// A static file server on the loopback interface for the browser tests (check_site.mjs,
// check_slides.mjs): serves `root` (a folder path: index.html for a folder, 404 outside it)
// with the given content types; returns the server, its base URL and the path resolver the
// link checks use (the file a URL path serves, or null).
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

export async function serve(root, types) {
  function resolveFile(urlPath) {
    let p = path.join(root, decodeURIComponent(urlPath));
    if (!p.startsWith(root)) return null;
    if (fs.existsSync(p) && fs.statSync(p).isDirectory()) p = path.join(p, "index.html");
    return fs.existsSync(p) ? p : null;
  }
  const server = http.createServer((req, res) => {
    const file = resolveFile(new URL(req.url, "http://127.0.0.1").pathname);
    if (!file) { res.writeHead(404); res.end("not found"); return; }
    res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { server, base: `http://127.0.0.1:${server.address().port}`, resolveFile };
}
