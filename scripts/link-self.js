// Links node_modules/pulumi-hypervisor to this checkout, so programs and the dynamic-provider
// plugin started from anywhere in the repo resolve `require("pulumi-hypervisor/provider")`
// exactly as they do for a user who installed the package.
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const link = path.join(root, "node_modules", "pulumi-hypervisor");
try {
  if (fs.readlinkSync(link) === "..") process.exit(0);
  fs.unlinkSync(link);
} catch {
  // absent: create below
}
fs.mkdirSync(path.dirname(link), { recursive: true });
fs.symlinkSync("..", link, "dir");
