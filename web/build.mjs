// Bundles the recipient page into OUT (argument, or ./dist): app.js (the page),
// sw.js (its service worker), decrypt-worker.js (the page's decryption workers),
// index.html and style.css. hashdrop-server's build.rs
// runs this into its OUT_DIR and embeds the files.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "dist"));
await mkdir(out, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ["chrome111", "firefox115", "safari16.4"],
  legalComments: "none",
  logLevel: "warning",
};
await build({ ...common, entryPoints: [join(here, "src/main.ts")], outfile: join(out, "app.js"), format: "esm" });
// A classic worker script: module service workers are not supported everywhere.
await build({ ...common, entryPoints: [join(here, "src/sw.ts")], outfile: join(out, "sw.js"), format: "iife" });
// Also classic: one file, no imports to fetch, loaded with new Worker(url) by parallel.ts.
await build({
  ...common,
  entryPoints: [join(here, "src/crypto/worker.ts")],
  outfile: join(out, "decrypt-worker.js"),
  format: "iife",
});
await copyFile(join(here, "src/index.html"), join(out, "index.html"));
await copyFile(join(here, "src/style.css"), join(out, "style.css"));
