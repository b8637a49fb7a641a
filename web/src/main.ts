// The recipient page: reads the key from the URL fragment (never sent anywhere),
// shows the share's facts and runs one download as a small state machine:
//   loading → ready → fetching → done | failed(reason)
// Every state is one screen; every failure is one plain sentence.

import type { Secret } from "./crypto/decrypt";
import { DamagedFileError, WrongKeyError, WrongPassphraseError } from "./crypto/decrypt";
import { openMetadata } from "./crypto/metadata";
import {
  bestSaveMethod,
  IN_MEMORY_CAP,
  prepareServiceWorker,
  SaveCancelledError,
  saveInMemory,
  saveWithPicker,
  saveWithServiceWorker,
  type SaveMethod,
  type SaveRequest,
} from "./save";
import {
  fetchShareInfo,
  NetworkError,
  ShareRefusedError,
  type ShareInfo,
  type ShareRefusal,
} from "./share";

/** Why a download did not complete; each has its own sentence. */
type Failure =
  | { kind: "missing_key" }
  | { kind: "wrong_key" }
  | { kind: "wrong_passphrase" }
  | { kind: "damaged" }
  | { kind: "too_big_for_memory" }
  | { kind: "network" }
  | { kind: "refused"; refusal: ShareRefusal }
  | { kind: "unexpected"; message: string };

type State =
  | { kind: "loading" }
  | { kind: "ready"; info: ShareInfo }
  | { kind: "fetching"; info: ShareInfo; received: number; startedAt: number }
  | { kind: "done"; info: ShareInfo; seconds: number }
  | { kind: "failed"; failure: Failure; info: ShareInfo | null };

const root = document.getElementById("app")!;
const fileId = decodeURIComponent(location.pathname.split("/").pop() ?? "");
// The fragment is the only place the key lives: read it once, keep it in memory.
const linkKey = decodeURIComponent(location.hash.replace(/^#/, "")).trim();
let state: State = { kind: "loading" };
// The header the sealed name was opened with: the download must start with it.
let sealedHeader: Uint8Array | null = null;
let lastPaint = 0;

function setState(next: State): void {
  state = next;
  // The screen's name, for tests and styles: "ready", "failed-expired", ...
  document.body.dataset.state =
    next.kind !== "failed"
      ? next.kind
      : `failed-${next.failure.kind === "refused" ? next.failure.refusal.kind : next.failure.kind}`;
  render();
}

async function start(): Promise<void> {
  render();
  try {
    const info = await fetchShareInfo(fileId);
    if (info.key_management_mode === "vault" && !linkKey.startsWith("AGE-SECRET-KEY-")) {
      setState({ kind: "failed", failure: { kind: "missing_key" }, info: unnamed(info) });
      return;
    }
    // A sealed name opens with the link's key at once; a passphrase file's waits for
    // the passphrase (the download form opens it first). A name in clear beside a
    // sealed one is the server's word, not the sender's: never shown.
    if (info.metadata) info.file_name = "";
    if (info.metadata && info.key_management_mode === "vault") {
      try {
        const opened = await openMetadata(info.metadata, { identity: linkKey });
        info.file_name = opened.meta.name;
        sealedHeader = opened.header;
      } catch (e) {
        setState({ kind: "failed", failure: failureOf(e), info: unnamed(info) });
        return;
      }
    }
    if (saveMethod(info) === "service-worker") prepareServiceWorker();
    setState({ kind: "ready", info });
  } catch (e) {
    setState({ kind: "failed", failure: failureOf(e), info: null });
  }
}

function saveMethod(info: ShareInfo): SaveMethod | null {
  const m = bestSaveMethod();
  if (m === "memory" && info.encrypted_size_bytes > IN_MEMORY_CAP) return null;
  return m;
}

async function download(info: ShareInfo, passphrase: string | null): Promise<void> {
  const method = saveMethod(info);
  if (method === null) {
    setState({ kind: "failed", failure: { kind: "too_big_for_memory" }, info });
    return;
  }
  let secret: Secret = passphrase === null ? { identity: linkKey } : { passphrase };
  if (info.metadata && !info.file_name) {
    try {
      const opened = await openMetadata(info.metadata, secret);
      info.file_name = opened.meta.name;
      sealedHeader = opened.header;
      // The file opens with the key its name opened with: one scrypt, not two.
      secret = { fileKey: opened.fileKey };
    } catch (e) {
      setState({ kind: "failed", failure: failureOf(e), info });
      return;
    }
  }
  const startedAt = performance.now();
  const req: SaveRequest = {
    downloadUrl: info.download_url,
    secret,
    fileName: info.file_name || fileId,
    expectedHeader: sealedHeader ?? undefined,
    onProgress: (received) => {
      if (state.kind !== "fetching") return;
      state.received = received;
      const now = performance.now();
      // Repaint at most five times a second; the last byte always paints.
      if (now - lastPaint > 200 || received >= info.encrypted_size_bytes) {
        lastPaint = now;
        render();
      }
    },
  };
  const run =
    method === "picker"
      ? saveWithPicker(req)
      : method === "service-worker"
        ? saveWithServiceWorker(req)
        : saveInMemory(req);
  // The picker opens before the first byte moves; the progress screen follows at once.
  setState({ kind: "fetching", info, received: 0, startedAt });
  try {
    await run;
    setState({ kind: "done", info, seconds: (performance.now() - startedAt) / 1000 });
  } catch (e) {
    if (e instanceof SaveCancelledError) {
      setState({ kind: "ready", info });
      return;
    }
    setState({ kind: "failed", failure: failureOf(e), info });
  }
}

function failureOf(e: unknown): Failure {
  if (e instanceof WrongKeyError) return { kind: "wrong_key" };
  if (e instanceof WrongPassphraseError) return { kind: "wrong_passphrase" };
  if (e instanceof DamagedFileError) return { kind: "damaged" };
  if (e instanceof ShareRefusedError) return { kind: "refused", refusal: e.refusal };
  if (e instanceof NetworkError) return { kind: "network" };
  return { kind: "unexpected", message: e instanceof Error ? e.message : String(e) };
}

// ---- rendering: plain DOM, text only (never innerHTML), one screen per state ----

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

function render(): void {
  const s = state;
  const screen = el("section", { class: "screen", "data-screen": s.kind });
  switch (s.kind) {
    case "loading":
      screen.append(el("p", {}, "Looking up this share…"));
      break;
    case "ready":
      screen.append(facts(s.info), downloadForm(s.info, null));
      break;
    case "fetching":
      screen.append(el("h1", {}, title(s.info)), progress(s));
      break;
    case "done":
      screen.append(
        el("h1", {}, title(s.info)),
        el(
          "p",
          { class: "ok", role: "status" },
          `Saved. Decrypted and verified in ${s.seconds.toFixed(1)} s: every part of the file was checked and nothing was altered.`,
        ),
      );
      break;
    case "failed":
      screen.append(...failedScreen(s.failure, s.info));
      break;
  }
  root.replaceChildren(screen);
  const focus = root.querySelector<HTMLElement>("[autofocus]");
  focus?.focus();
}

/** The heading: the file's name, or what stands for a name still sealed. */
function title(info: ShareInfo): string {
  if (info.file_name) return info.file_name;
  return info.key_management_mode === "passphrase" ? "Passphrase-protected file" : "Encrypted file";
}

/** `info` with no name shown: a name that did not open is not shown either. */
function unnamed(info: ShareInfo): ShareInfo {
  return { ...info, file_name: "" };
}

function facts(info: ShareInfo): HTMLElement {
  const rows: [string, string][] = [
    ["Size", approximateSize(info.encrypted_size_bytes)],
    ["Expires", info.expires_at ? new Date(info.expires_at).toLocaleString() : "never"],
    [
      "Downloads left",
      info.downloads_left === null || info.downloads_left === undefined
        ? "no limit"
        : String(info.downloads_left),
    ],
  ];
  const dl = el("dl", { class: "facts" });
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", { "data-fact": k }, v));
  return el("div", {}, el("h1", {}, title(info)), dl);
}

function downloadForm(info: ShareInfo, note: string | null): HTMLElement {
  const form = el("form", { class: "download" });
  const needsPassphrase = info.key_management_mode === "passphrase";
  let field: HTMLInputElement | null = null;
  if (needsPassphrase) {
    field = el("input", {
      type: "password",
      id: "passphrase",
      name: "passphrase",
      autocomplete: "off",
      required: "",
      autofocus: "",
    });
    form.append(el("label", { for: "passphrase" }, "Passphrase (the sender gave it to you separately)"), field);
  }
  if (note) form.append(el("p", { class: "error", role: "alert" }, note));
  form.append(el("button", { type: "submit", id: "download" }, "Download"));
  form.append(
    el(
      "p",
      { class: "hint" },
      "The file is decrypted here, in your browser; the server only ever holds ciphertext and never sees the key.",
    ),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void download(info, field ? field.value : null);
  });
  return form;
}

function progress(s: Extract<State, { kind: "fetching" }>): HTMLElement {
  const total = s.info.encrypted_size_bytes;
  const elapsed = (performance.now() - s.startedAt) / 1000;
  const rate = elapsed > 0 ? s.received / elapsed : 0;
  const left = rate > 0 ? (total - s.received) / rate : NaN;
  const bar = el("progress", { max: String(Math.max(total, 1)), value: String(s.received) });
  return el(
    "div",
    { class: "progress", role: "status" },
    bar,
    el(
      "p",
      {},
      `${formatBytes(s.received)} of ${formatBytes(total)} · ${formatBytes(rate)}/s · ${
        Number.isFinite(left) ? `${Math.ceil(left)} s left` : "starting…"
      }`,
    ),
    el("p", { class: "hint" }, "Downloading and decrypting. Keep this page open until it finishes."),
  );
}

function failedScreen(f: Failure, info: ShareInfo | null): HTMLElement[] {
  const out: HTMLElement[] = [];
  if (info) out.push(el("h1", {}, title(info)));
  if (f.kind === "wrong_passphrase" && info) {
    out.push(downloadForm(info, "That passphrase does not open this file. Check it and try again."));
    return out;
  }
  out.push(el("p", { class: "error", role: "alert" }, sentence(f)));
  if (f.kind === "too_big_for_memory") {
    out.push(el("pre", { class: "command" }, `hashdrop decrypt '${location.href}'`));
  }
  const retryable =
    f.kind === "network" ||
    f.kind === "unexpected" ||
    (f.kind === "refused" && (f.refusal.kind === "unavailable" || f.refusal.kind === "rate_limited" || f.refusal.kind === "server_error"));
  if (retryable) {
    const again = el("button", { type: "button", id: "retry" }, "Try again");
    again.addEventListener("click", () => {
      setState({ kind: "loading" });
      void start();
    });
    out.push(again);
  }
  return out;
}

function sentence(f: Failure): string {
  switch (f.kind) {
    case "missing_key":
      return "This link is missing its key (the part after #). Ask the sender for the complete link.";
    case "wrong_key":
      return "The key in this link does not open this file. Ask the sender for the complete, unmodified link. Nothing was saved.";
    case "wrong_passphrase":
      return "That passphrase does not open this file.";
    case "damaged":
      return "This file was tampered with or damaged after it was encrypted, so it was not saved. Ask the sender to upload it again.";
    case "too_big_for_memory":
      return `This browser cannot stream a file this large to disk, and it is over the ${formatBytes(IN_MEMORY_CAP)} this page will hold in memory. Download it with the command-line tool instead:`;
    case "network":
      return "The connection to the server broke, so the download stopped and nothing was saved. Try again.";
    case "unexpected":
      return `The download failed and nothing was saved (${f.message}).`;
    case "refused":
      return refusalSentence(f.refusal);
  }
}

function refusalSentence(r: ShareRefusal): string {
  switch (r.kind) {
    case "not_found":
      return "This file does not exist: the link is wrong or the sender deleted it.";
    case "expired":
      return "This share link has expired. Ask the sender to share the file again.";
    case "cap_reached":
      return "This file has been downloaded as many times as the sender allowed; it can no longer be downloaded.";
    case "daily_limit":
      return `This file reached its download limit for today. Downloads open again ${whenFromNow(r.retryAfterSecs)}.`;
    case "rate_limited":
      return `Too many requests right now. Try again ${whenFromNow(r.retryAfterSecs)}.`;
    case "unavailable":
      return `The file store is unavailable at the moment. Nothing was saved; try again ${whenFromNow(r.retryAfterSecs)}.`;
    case "server_error":
      return `The server failed (HTTP ${r.status}). Nothing was saved; try again later.`;
  }
}

function whenFromNow(secs: number): string {
  // Rounded up to the minute: "at 00:00", not "at 23:59", for a reset at midnight.
  const at = new Date(Math.ceil((Date.now() + secs * 1000) / 60_000) * 60_000);
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (secs < 90) return `in ${Math.ceil(secs)} seconds`;
  if (secs < 5400) return `in ${Math.round(secs / 60)} minutes (at ${time})`;
  return `in about ${Math.round(secs / 3600)} hours (at ${time})`;
}

// The server knows the ciphertext size only. age adds a header of a few hundred bytes
// (its length varies: stanzas, padding "grease"), a 16-byte nonce and 16 bytes per
// 64 KiB chunk, so the plaintext size is known to within a few hundred bytes.
function approximateSize(encrypted: number): string {
  const chunks = Math.max(1, Math.ceil(encrypted / (65536 + 16)));
  const plaintext = encrypted - 16 - chunks * 16 - 300;
  return plaintext < 1024 ? "less than 1 KiB" : `about ${formatBytes(plaintext)}`;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

void start();
