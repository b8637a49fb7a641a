// The recipient page in a real Chromium against a real hashdrop-server: files uploaded
// with the real CLI are saved by the page and compared byte for byte, through the
// save picker, the service worker and the in-memory fallback; every failure shows its
// own sentence and leaves no completed file; no request ever carries the key.
//
// Run: HASHDROP_TEST_CHROMIUM=/usr/bin/chromium node --test test/   (from web/, after
// `cargo build -p hashdrop-server -p hashdrop-cli`). Skips with a notice without
// HASHDROP_TEST_CHROMIUM, fails instead under HASHDROP_TEST_REQUIRE_SERVICES=1.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { generateIdentity } from "age-encryption";
import {
  FILE_PASSPHRASE,
  missingPrerequisite,
  repoRoot,
  sample,
  signedUpClient,
  skipOrFail,
  startServer,
} from "./harness.mjs";

const KiB = 1024;
const MiB = 1024 * KiB;
// The server allows each file this many downloads a day; one story uses them up.
const DAILY_DOWNLOADS = 3;
const SCREENSHOTS = process.env.HASHDROP_SCREENSHOT_DIR ?? join(repoRoot, "docs/web");

const missing = await missingPrerequisite();
let server, alice, context, work;
/** Every request the browser made (pages, frames and the service worker). */
const requests = [];
const pendingAudits = [];
/** Console errors and page errors, e.g. CSP violations. */
const browserErrors = [];
/** Secrets the browser must never send: link keys and passphrases used. */
const secrets = new Set([FILE_PASSPHRASE]);

before(async () => {
  if (missing) return;
  work = await mkdtemp(join(tmpdir(), "hashdrop-web-files-"));
  server = await startServer({
    HASHDROP_LIMITS__DAILY_DOWNLOADS_PER_FILE: String(DAILY_DOWNLOADS),
  });
  alice = await signedUpClient(server, "alice@example.com");
  const userDataDir = await mkdtemp(join(tmpdir(), "hashdrop-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.HASHDROP_TEST_CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 800, height: 560 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.on("request", (req) => {
    pendingAudits.push(
      (async () => {
        requests.push({
          url: req.url(),
          headers: await req.allHeaders().catch(() => req.headers()),
          body: req.postDataBuffer()?.toString("latin1") ?? "",
          fromServiceWorker: req.serviceWorker() !== null,
        });
      })(),
    );
  });
  await mkdir(SCREENSHOTS, { recursive: true });
});

after(async () => {
  await context?.close();
  await server?.stop();
  await alice?.remove();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A test that needs the browser and the server. */
function story(name, fn) {
  test(name, async (t) => {
    if (missing) return skipOrFail(t, missing);
    await fn(t);
  });
}

// ---------- helpers ----------

/** Uploads `bytes` as `name` and returns {fileId, link, bytes}. */
async function share(name, bytes, extra = []) {
  const path = join(work, name);
  await writeFile(path, bytes);
  const up = await alice.upload(path, extra);
  const link = up.share_link;
  const key = new URL(link).hash.slice(1);
  if (key) secrets.add(key);
  return { fileId: up.file_id, link, bytes, name };
}

/**
 * A new tab whose save method is forced:
 *  - "picker": showSaveFilePicker answers with a file in the origin-private file
 *    system, a real FileSystemFileHandle the test can read back (a native dialog cannot
 *    be clicked in headless mode);
 *  - "service-worker": no save picker, so the page uses its service worker;
 *  - "memory": neither, so the page falls back to an in-memory Blob.
 */
async function tab(mode) {
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") browserErrors.push(m.text());
  });
  page.on("pageerror", (e) => browserErrors.push(String(e)));
  await page.addInitScript((mode) => {
    if (mode === "picker") {
      window.showSaveFilePicker = async ({ suggestedName }) => {
        const root = await navigator.storage.getDirectory();
        return root.getFileHandle(`saved-${suggestedName}`, { create: true });
      };
    } else {
      delete window.showSaveFilePicker;
      delete Window.prototype.showSaveFilePicker;
      if (mode === "memory") delete Navigator.prototype.serviceWorker;
    }
  }, mode);
  return page;
}

/** The file the save-picker path wrote, or null if there is none. */
async function pickerFile(page, name) {
  const b64 = await page.evaluate(async (name) => {
    const root = await navigator.storage.getDirectory();
    let handle;
    try {
      handle = await root.getFileHandle(`saved-${name}`);
    } catch {
      return null;
    }
    const bytes = new Uint8Array(await (await handle.getFile()).arrayBuffer());
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
  }, name);
  return b64 === null ? null : Buffer.from(b64, "base64");
}

async function state(page) {
  return page.evaluate(() => document.body.dataset.state);
}

/** Waits until the page leaves loading/fetching and returns where it ended. */
async function settled(page, timeout = 60_000) {
  await page.waitForFunction(
    () => !["loading", "fetching"].includes(document.body.dataset.state ?? ""),
    null,
    { timeout },
  );
  return state(page);
}

async function open(page, link) {
  await page.goto(link);
  return settled(page);
}

async function alertText(page) {
  return (await page.locator(".error").first().textContent())?.trim() ?? "";
}

async function shot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/**
 * Ready → Download with the save picker; returns the end state, the saved bytes and the
 * URLs of the dedicated workers the page started.
 */
async function saveWithPicker(f, { passphrase } = {}) {
  const page = await tab("picker");
  const workers = [];
  page.on("worker", (w) => workers.push(w.url()));
  assert.equal(await open(page, f.link), "ready");
  if (passphrase !== undefined) await page.fill("#passphrase", passphrase);
  await page.click("#download");
  const end = await settled(page);
  const saved = await pickerFile(page, f.name);
  return { page, end, saved, workers };
}

const DECRYPT_WORKER = /\/web\/decrypt-worker\.js$/;

/** Ready → Download through the service worker; returns the end state and the download. */
async function saveWithServiceWorker(f, { passphrase, expectDownload = true } = {}) {
  const page = await tab("service-worker");
  assert.equal(await open(page, f.link), "ready");
  if (passphrase !== undefined) await page.fill("#passphrase", passphrase);
  const download = expectDownload ? page.waitForEvent("download", { timeout: 60_000 }) : null;
  await page.click("#download");
  const end = await settled(page);
  return { page, end, download: download && (await download) };
}

async function downloadedBytes(download) {
  const failure = await download.failure();
  assert.equal(failure, null, `the browser's download failed: ${failure}`);
  return readFile(await download.path());
}

const sizes = [
  ["0 B", 0],
  ["1 B", 1],
  ["64 KiB - 1", 64 * KiB - 1],
  ["64 KiB", 64 * KiB],
  ["64 KiB + 1", 64 * KiB + 1],
  ["5 MiB", 5 * MiB],
];

// ---------- stories ----------

story("the page, its script, style, decryption worker and service worker carry a strict CSP and no referrer", async () => {
  const f = await share("headers.txt", Buffer.from("headers"));
  const page = `/d/${f.fileId}`;
  for (const path of [page, "/web/app.js", "/web/style.css", "/web/decrypt-worker.js", "/d/sw.js"]) {
    const r = await fetch(server.url + path);
    assert.equal(r.status, 200, path);
    const csp = r.headers.get("content-security-policy") ?? "";
    // 'wasm-unsafe-eval' lets the page compile the WASM cipher; it allows no JS eval.
    assert.match(csp, /(^|;)\s*script-src 'self' 'wasm-unsafe-eval'\s*(;|$)/, `${path}: ${csp}`);
    assert.match(csp, /default-src 'none'/, path);
    assert.doesNotMatch(csp.replace("'wasm-unsafe-eval'", ""), /unsafe-inline|unsafe-eval|\*/, path);
    assert.equal(r.headers.get("referrer-policy"), "no-referrer", path);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff", path);
    if (path === page) {
      const html = await r.text();
      // Every script is a file from this origin: no inline code.
      assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i);
      assert.doesNotMatch(html, /\son[a-z]+=/i, "no inline event handlers");
    }
  }
});

for (const [label, size] of sizes) {
  story(`save picker: a ${label} vault-mode file is saved byte for byte`, async () => {
    const f = await share(`picker-${size}.bin`, sample(size, size + 1));
    const { page, end, saved } = await saveWithPicker(f);
    assert.equal(end, "done", await page.content());
    assert.ok(saved, "a file was written");
    assert.ok(saved.equals(f.bytes), `saved ${saved.length} bytes, want ${f.bytes.length}`);
    await page.close();
  });
}

for (const [label, size] of sizes) {
  story(`service worker: a ${label} vault-mode file streams into a download, byte for byte`, async () => {
    const f = await share(`sw-${size}.bin`, sample(size, size + 7));
    const { page, end, download } = await saveWithServiceWorker(f);
    assert.equal(end, "done");
    assert.equal(download.suggestedFilename(), f.name);
    const bytes = await downloadedBytes(download);
    assert.ok(bytes.equals(f.bytes), `downloaded ${bytes.length} bytes, want ${f.bytes.length}`);
    if (size === 5 * MiB) await shot(page, "done");
    await page.close();
  });
}

story("save picker: the payload is opened by dedicated workers from /web/decrypt-worker.js", async () => {
  const f = await share("workers-3MiB.bin", sample(3 * MiB + 5, 21));
  const { page, end, saved, workers } = await saveWithPicker(f);
  assert.equal(end, "done");
  assert.ok(saved.equals(f.bytes));
  const started = workers.filter((u) => DECRYPT_WORKER.test(u));
  assert.ok(started.length >= 2, `decryption workers started: ${JSON.stringify(workers)}`);
  await page.close();
});

story("the download screen shows bytes, rate and time left while it streams", async () => {
  const f = await share("slow-5MiB.bin", sample(5 * MiB, 99));
  const page = await tab("picker");
  assert.equal(await open(page, f.link), "ready");
  await shot(page, "ready");
  // Slow the network to ~2 MB/s so the transfer takes a few seconds.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: 2_000_000,
    uploadThroughput: -1,
  });
  await page.click("#download");
  // Read the line in the same frame as the bar, once past 1 MiB, so the two agree
  // (a bar value of 1,000,000 bytes still reads "977 KiB").
  const text = await (
    await page.waitForFunction(() => {
      const p = document.querySelector("progress");
      const line = document.querySelector(".progress p");
      return p !== null && line !== null && Number(p.value) > 1_100_000 ? line.textContent : null;
    })
  ).jsonValue();
  assert.match(text, /^[\d.]+ MiB of 5\.0 MiB · [\d.]+ (KiB|MiB)\/s · \d+ s left/);
  await shot(page, "downloading");
  assert.equal(await settled(page), "done");
  assert.ok((await pickerFile(page, f.name)).equals(f.bytes));
  await page.close();
});

story("in-memory fallback: without picker or service worker the file still arrives intact", async () => {
  const f = await share("memory.bin", sample(64 * KiB + 1, 5));
  const page = await tab("memory");
  assert.equal(await open(page, f.link), "ready");
  const download = page.waitForEvent("download");
  await page.click("#download");
  assert.equal(await settled(page), "done");
  assert.ok((await downloadedBytes(await download)).equals(f.bytes));
  await page.close();
});

story("passphrase file: a wrong passphrase says so and allows a retry, the right one saves it", async () => {
  const f = await share("passphrase.txt", sample(100 * KiB, 3), ["--no-vault"]);
  assert.equal(new URL(f.link).hash, "", "passphrase links carry no key");
  secrets.add("not the passphrase");
  // Through the save picker...
  const page = await tab("picker");
  assert.equal(await open(page, f.link), "ready");
  await shot(page, "ready-passphrase");
  await page.fill("#passphrase", "not the passphrase");
  await page.click("#download");
  assert.equal(await settled(page), "failed-wrong_passphrase");
  assert.match(await alertText(page), /passphrase does not open this file/);
  assert.equal(await pickerFile(page, f.name), null, "no file is left behind");
  await shot(page, "error-wrong-passphrase");
  // ...the same screen takes the right one.
  await page.fill("#passphrase", FILE_PASSPHRASE);
  await page.click("#download");
  assert.equal(await settled(page), "done");
  assert.ok((await pickerFile(page, f.name)).equals(f.bytes));
  await page.close();
});

story("passphrase file through the service worker", async () => {
  const f = await share("passphrase-sw.txt", sample(70 * KiB, 4), ["--no-vault"]);
  const { page, end, download } = await saveWithServiceWorker(f, { passphrase: FILE_PASSPHRASE });
  assert.equal(end, "done");
  assert.ok((await downloadedBytes(download)).equals(f.bytes));
  await page.close();
});

story("a wrong key is named as such at once and nothing is saved", async () => {
  const f = await share("wrong-key.bin", sample(1000, 8));
  const other = await generateIdentity();
  secrets.add(other);
  const link = `${f.link.split("#")[0]}#${other}`;
  // The file's name is sealed: opening it with the link's key is the first thing the
  // page does, so a wrong key is named before there is anything to download.
  for (const mode of ["picker", "service-worker"]) {
    const page = await tab(mode);
    assert.equal(await open(page, link), "failed-wrong_key", mode);
    assert.match(await alertText(page), /key in this link does not open this file/);
    assert.equal(await page.locator("#download").count(), 0, "no download is offered");
    assert.doesNotMatch(await page.locator("h1").textContent(), /wrong-key/, "no name shown");
    if (mode === "picker") {
      assert.equal(await pickerFile(page, f.name), null);
      await shot(page, "error-wrong-key");
    }
    await page.close();
  }
});

story("a link without its key says the key is missing", async () => {
  const f = await share("no-key.bin", sample(10, 9));
  const page = await tab("picker");
  assert.equal(await open(page, f.link.split("#")[0]), "failed-missing_key");
  assert.match(await alertText(page), /missing its key/);
  await shot(page, "error-missing-key");
  await page.close();
});

story("one flipped byte in the stored object: tampering is reported and no file completes", async () => {
  const f = await share("tampered.bin", sample(3 * 64 * KiB, 10));
  const [object] = (await server.objects()).filter((p) => p.includes(f.fileId));
  assert.ok(object, "the object is in the local store");
  const stored = await readFile(object);
  stored[Math.floor(stored.length / 2)] ^= 0x01;
  await writeFile(object, stored);

  const { page, end, saved, workers } = await saveWithPicker(f);
  assert.equal(end, "failed-damaged");
  assert.match(await alertText(page), /tampered with or damaged/);
  assert.equal(saved, null, "the partial file was removed");
  assert.ok(workers.some((u) => DECRYPT_WORKER.test(u)), "the workers opened the payload");
  await shot(page, "error-damaged");
  await page.close();

  const sw = await saveWithServiceWorker(f);
  assert.equal(sw.end, "failed-damaged");
  assert.notEqual(await sw.download.failure(), null, "the browser marks the download failed");
  await sw.page.close();
});

story("a file shown under another file's sealed name is refused and nothing is saved", async () => {
  // Two passphrase files with one passphrase: the name of either opens with it. The
  // store swaps their objects, so A's share (A's sealed name) serves B's ciphertext.
  const a = await share("swap-a.txt", sample(70 * KiB, 40), ["--no-vault"]);
  const b = await share("swap-b.txt", sample(70 * KiB, 41), ["--no-vault"]);
  const objects = await server.objects();
  const [pa] = objects.filter((p) => p.includes(a.fileId));
  const [pb] = objects.filter((p) => p.includes(b.fileId));
  const [ca, cb] = [await readFile(pa), await readFile(pb)];
  await writeFile(pa, cb);
  await writeFile(pb, ca);

  const { page, end, saved } = await saveWithPicker(a, { passphrase: FILE_PASSPHRASE });
  assert.equal(end, "failed-damaged");
  assert.equal(saved, null, "nothing saved under A's name");
  await page.close();
  // The service worker finds it before it answers, so the browser gets no download.
  const sw = await saveWithServiceWorker(a, { passphrase: FILE_PASSPHRASE, expectDownload: false });
  assert.equal(sw.end, "failed-damaged");
  await sw.page.close();
  await writeFile(pa, ca);
  await writeFile(pb, cb);
});

story("a stored object cut on a chunk boundary (its last chunk gone): damage is reported and no file completes", async () => {
  const f = await share("cut.bin", sample(4 * 64 * KiB + 100, 22));
  const [object] = (await server.objects()).filter((p) => p.includes(f.fileId));
  assert.ok(object, "the object is in the local store");
  const stored = await readFile(object);
  // The last chunk is 100 bytes + a 16-byte tag; what is left ends after 4 full chunks.
  await writeFile(object, stored.subarray(0, stored.length - 116));

  const { page, end, saved, workers } = await saveWithPicker(f);
  assert.equal(end, "failed-damaged");
  assert.equal(saved, null, "the partial file was removed");
  assert.ok(workers.some((u) => DECRYPT_WORKER.test(u)), "the workers opened the payload");
  await page.close();

  const sw = await saveWithServiceWorker(f);
  assert.equal(sw.end, "failed-damaged");
  assert.notEqual(await sw.download.failure(), null, "the browser marks the download failed");
  await sw.page.close();
});

story("an expired link says it expired", async () => {
  const f = await share("expired.bin", sample(10, 11), ["--expires", "2s"]);
  await new Promise((r) => setTimeout(r, 2500));
  const r = await fetch(`${server.url}/d/${f.fileId}`);
  assert.equal(r.status, 410);
  const page = await tab("picker");
  assert.equal(await open(page, f.link), "failed-expired");
  assert.match(await alertText(page), /has expired/);
  await shot(page, "error-expired");
  await page.close();
});

story("a used-up download cap says the limit was reached", async () => {
  const f = await share("capped.bin", sample(10, 12), ["--max-downloads", "1"]);
  const page = await tab("picker");
  assert.equal(await open(page, f.link), "ready");
  assert.equal(await page.locator('[data-fact="Downloads left"]').textContent(), "1");
  await page.click("#download");
  assert.equal(await settled(page), "done");
  await page.close();
  const again = await tab("picker");
  assert.equal(await open(again, f.link), "failed-cap_reached");
  assert.match(await alertText(again), /downloaded as many times as the sender allowed/);
  await shot(again, "error-cap-reached");
  await again.close();
});

story("the daily download limit says when downloads open again", async () => {
  const f = await share("daily.bin", sample(10, 13));
  const info = await (await fetch(`${server.url}/api/share/${f.fileId}`)).json();
  for (let i = 0; i < DAILY_DOWNLOADS; i++) {
    const r = await fetch(info.download_url, { redirect: "manual" });
    assert.equal(r.status, 303);
  }
  const page = await tab("picker");
  assert.equal(await open(page, f.link), "ready");
  await page.click("#download");
  assert.equal(await settled(page), "failed-daily_limit");
  assert.match(await alertText(page), /limit for today\. Downloads open again in /);
  assert.equal(await pickerFile(page, f.name), null);
  await shot(page, "error-daily-limit");
  await page.close();
});

story("a deleted file says it does not exist", async () => {
  const f = await share("deleted.bin", sample(10, 14));
  await alice.cli(["files", "delete", f.fileId, "--yes"]);
  const page = await tab("picker");
  assert.equal(await open(page, f.link), "failed-not_found");
  assert.match(await alertText(page), /does not exist/);
  await shot(page, "error-not-found");
  await page.close();
});

story("at phone width the page fits without sideways scrolling", async () => {
  const f = await share("a-rather-long-file-name-that-must-wrap-on-a-phone-screen.pdf", sample(10, 15));
  const page = await tab("picker");
  await page.setViewportSize({ width: 360, height: 640 });
  assert.equal(await open(page, f.link), "ready");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 360, `page is ${overflow}px wide`);
  await shot(page, "ready-phone");
  await page.close();
});

// Last: looks at everything the stories above made the browser do.
story("no request carried a key or passphrase, none left this origin, no CSP violation", async () => {
  await Promise.all(pendingAudits);
  assert.ok(requests.length > 50, `saw ${requests.length} requests`);
  assert.ok(
    requests.some((r) => r.fromServiceWorker && r.url.includes("/files/download/")),
    "the service worker's own downloads were observed",
  );
  const origin = new URL(server.url).origin;
  for (const r of requests) {
    assert.equal(new URL(r.url).origin, origin, `request to another origin: ${r.url}`);
    const text = [r.url, JSON.stringify(r.headers), r.body].join("\n");
    for (const s of secrets) {
      for (const form of [s, encodeURIComponent(s), s.toLowerCase()]) {
        assert.ok(!text.includes(form), `a secret left the browser in ${r.url}`);
      }
    }
  }
  const csp = browserErrors.filter((e) => /Content Security Policy/i.test(e));
  assert.deepEqual(csp, []);
});
