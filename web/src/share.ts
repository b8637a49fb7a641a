// The server's share API as the page and the service worker see it, with every
// refusal turned into one typed reason. No DOM access (used by the service worker).

import { passThrough } from "./bytes";
import type { SealedMetadata } from "./crypto/metadata";

/** `GET /api/share/{id}` answer (hashdrop-wire ShareInfo). */
export interface ShareInfo {
  file_id: string;
  /** Empty when `metadata` carries the name sealed; the page fills it in once opened. */
  file_name: string;
  /** The sealed name and type of newer uploads. */
  metadata?: SealedMetadata | null;
  /** The keyed digest of newer uploads (hex). */
  keyed_digest?: string | null;
  encrypted_size_bytes: number;
  key_management_mode: "vault" | "passphrase";
  expires_at: string | null;
  downloads_left?: number | null;
  download_url: string;
}

/** Why a share cannot be fetched, as the server said it. */
export type ShareRefusal =
  | { kind: "not_found" }
  | { kind: "expired" }
  | { kind: "cap_reached" }
  | { kind: "daily_limit"; retryAfterSecs: number }
  | { kind: "rate_limited"; retryAfterSecs: number }
  | { kind: "unavailable"; retryAfterSecs: number }
  | { kind: "server_error"; status: number };

/** A refusal from the server, thrown by the fetch helpers below. */
export class ShareRefusedError extends Error {
  override name = "ShareRefusedError";
  constructor(readonly refusal: ShareRefusal) {
    super(`share refused: ${refusal.kind}`);
  }
}

/** The connection failed (offline, server gone, download cut). */
export class NetworkError extends Error {
  override name = "NetworkError";
}

async function refusalOf(resp: Response): Promise<ShareRefusal> {
  let code = "";
  try {
    const body: unknown = await resp.json();
    if (body && typeof body === "object" && "code" in body) code = String(body.code);
  } catch {
    // Not JSON (e.g. a proxy's page): the status alone decides.
  }
  const retry = Math.max(1, Number(resp.headers.get("retry-after")) || 0);
  switch (resp.status) {
    case 400:
    case 404:
      return { kind: "not_found" };
    case 410:
      return code === "download_cap_reached" ? { kind: "cap_reached" } : { kind: "expired" };
    case 429:
      return code === "download_limit"
        ? { kind: "daily_limit", retryAfterSecs: retry }
        : { kind: "rate_limited", retryAfterSecs: retry };
    case 503:
      return { kind: "unavailable", retryAfterSecs: retry };
    default:
      return { kind: "server_error", status: resp.status };
  }
}

async function get(url: string): Promise<Response> {
  try {
    // Same origin only, no referrer, never cached: the answers change with every download.
    return await fetch(url, { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" });
  } catch {
    throw new NetworkError("the server could not be reached");
  }
}

/** The public facts of a share. */
export async function fetchShareInfo(fileId: string): Promise<ShareInfo> {
  const resp = await get(`/api/share/${encodeURIComponent(fileId)}`);
  if (!resp.ok) throw new ShareRefusedError(await refusalOf(resp));
  return (await resp.json()) as ShareInfo;
}

/** Starts the counted download; resolves with the ciphertext stream. */
export async function fetchCiphertext(
  downloadUrl: string,
): Promise<{ body: ReadableStream<Uint8Array>; length: number | null }> {
  const path = sameOriginPath(downloadUrl);
  const resp = await get(path);
  if (!resp.ok) throw new ShareRefusedError(await refusalOf(resp));
  if (!resp.body) throw new NetworkError("the download returned no body");
  const len = resp.headers.get("content-length");
  return { body: networkErrorsNamed(resp.body), length: len === null ? null : Number(len) };
}

// A body read that fails is a broken connection: give it a name the page can explain.
// A byte stream, so the decryptor reads the body into its own buffers (bytes.ts).
function networkErrorsNamed(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  return passThrough(body, { mapError: () => new NetworkError("the connection broke during the download") });
}

// The server hands out an absolute download URL; the page only ever talks to its own
// origin, so it keeps the path and query (a foreign origin would be refused by CSP anyway).
function sameOriginPath(url: string): string {
  const u = new URL(url, self.location.href);
  return u.pathname + u.search;
}
