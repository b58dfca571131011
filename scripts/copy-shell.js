// Copies the shell scripts the provider runs on hosts (provider/src/**/*.sh) beside the compiled
// JS in dist/, where provider/src/host/script.ts looks for them at run time.
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const from = path.join(root, "provider", "src");
const to = path.join(root, "dist", "provider", "src");
let n = 0;
for (const rel of fs.readdirSync(from, { recursive: true })) {
  if (!String(rel).endsWith(".sh")) continue;
  fs.mkdirSync(path.dirname(path.join(to, rel)), { recursive: true });
  fs.copyFileSync(path.join(from, rel), path.join(to, rel));
  n++;
}
if (n === 0) throw new Error(`no .sh files under ${from}`);
