// Copies the pinned front-end libraries from node_modules into static/vendor (git-ignored).
// Run by `npm run build`; the Makefile and the wheel build hook call it.
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "static", "vendor");
const files = {
  "htmx.org/dist/htmx.min.js": "htmx.min.js",
  "uplot/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
  "uplot/dist/uPlot.min.css": "uPlot.min.css",
};
mkdirSync(out, { recursive: true });
for (const [src, dest] of Object.entries(files)) {
  copyFileSync(join(root, "node_modules", src), join(out, dest));
}
writeFileSync(join(out, ".built"), new Date().toISOString() + "\n");
console.log(`copied ${Object.keys(files).length} files into static/vendor`);
