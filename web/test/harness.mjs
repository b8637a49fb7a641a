// Real components for the browser tests: a hashdrop-server on a free port with a
// temporary data directory (embedded SQLite, local blob store, log mailer), the real
// `hashdrop` CLI to register, upload and share, and the Debian Chromium driven by
// playwright-core. Nothing is mocked; no browser is ever downloaded.

import { spawn, execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../..");

export const PASSWORD = "correct horse battery";
export const VAULT_PASSWORD = "vault passphrase 1";
export const FILE_PASSPHRASE = "file passphrase 1";

/**
 * Why the browser tests cannot run here, or null. Missing pieces are a skip with a
 * notice, or a failure under HASHDROP_TEST_REQUIRE_SERVICES=1.
 */
export async function missingPrerequisite() {
  const chromium = process.env.HASHDROP_TEST_CHROMIUM;
  if (!chromium) return "HASHDROP_TEST_CHROMIUM is not set (path of a Chromium binary)";
  for (const [what, path] of [
    ["Chromium", chromium],
    ["hashdrop-server", serverBin()],
    ["hashdrop", cliBin()],
  ]) {
    try {
      await stat(path);
    } catch {
      return `${what} not found at ${path} (build with cargo build -p hashdrop-server -p hashdrop-cli, or set HASHDROP_SERVER_BIN / HASHDROP_CLI_BIN)`;
    }
  }
  return null;
}

/** Calls `t.skip` with a notice, or fails when services are required. */
export function skipOrFail(t, why) {
  if (process.env.HASHDROP_TEST_REQUIRE_SERVICES === "1") {
    throw new Error(`required service missing: ${why}`);
  }
  console.log(`SKIPPED: ${why}`);
  t.skip(why);
}

function targetDir() {
  return process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target");
}
export function serverBin() {
  return process.env.HASHDROP_SERVER_BIN ?? join(targetDir(), "debug/hashdrop-server");
}
export function cliBin() {
  return process.env.HASHDROP_CLI_BIN ?? join(targetDir(), "debug/hashdrop");
}

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** A running hashdrop-server; `stop()` kills it and removes its data. */
export async function startServer(extraEnv = {}) {
  const data = await mkdtemp(join(tmpdir(), "hashdrop-web-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { ...process.env };
  delete env.HASHDROP_CONFIG;
  delete env.HASHDROP_DATABASE_URL;
  Object.assign(env, {
    HASHDROP_RATE_LIMIT__ENABLED: "false",
    HASHDROP_AUTH__ARGON2_M_COST_KIB: "1024",
    HASHDROP_AUTH__ARGON2_T_COST: "1",
    ...extraEnv,
  });
  const child = spawn(
    serverBin(),
    ["--listen", `127.0.0.1:${port}`, "--data-dir", data, "--public-url", url],
    { env, stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr.on("data", (d) => {
    log += d;
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`hashdrop-server exited:\n${log}`);
    try {
      const r = await fetch(`${url}/api/healthz`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`hashdrop-server did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    data,
    log: () => log,
    async stop() {
      child.kill();
      await new Promise((r) => child.once("exit", r));
      await rm(data, { recursive: true, force: true });
    },
    /** Every stored object (path on disk). */
    async objects() {
      const out = [];
      const walk = async (d) => {
        for (const e of await readdir(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          if (e.isDirectory()) await walk(p);
          else out.push(p);
        }
      };
      await walk(join(data, "blobs"));
      return out;
    },
  };
}

/** One CLI user, signed up and logged in against `server`. */
export async function signedUpClient(server, email) {
  const home = await mkdtemp(join(tmpdir(), "hashdrop-home-"));
  const env = {
    ...process.env,
    HASHDROP_HOME: home,
    HASHDROP_SERVER: server.url,
    HASHDROP_SCRYPT_WORK_FACTOR: "10",
    HASHDROP_PASSWORD: PASSWORD,
    HASHDROP_VAULT_PASSWORD: VAULT_PASSWORD,
    HASHDROP_PASSPHRASE: FILE_PASSPHRASE,
  };
  delete env.HASHDROP_OTP;
  const cli = async (args, more = {}) => {
    try {
      const { stdout } = await run(cliBin(), args, { env: { ...env, ...more }, maxBuffer: 1 << 26 });
      return stdout;
    } catch (e) {
      throw new Error(`hashdrop ${args.join(" ")} failed: ${e.stderr ?? e.message}`);
    }
  };
  await cli(["auth", "register", "--email", email]);
  const otp = await mailedCode(join(server.data, "mail"), email);
  await cli(["auth", "verify", "--email", email], { HASHDROP_OTP: otp });
  await cli(["auth", "login", "--email", email]);
  return {
    cli,
    /** Uploads `path` and returns the CLI's JSON answer (file_id, share_link, ...). */
    async upload(path, extra = []) {
      return JSON.parse(await cli(["--json", "upload", path, ...extra]));
    },
    async remove() {
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** The 6-digit code in the newest log-mailer `.eml` to `email`. */
async function mailedCode(dir, email) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    let names = [];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith(".eml")).sort();
    } catch {
      // the spool appears with the first mail
    }
    for (const n of names.reverse()) {
      const text = await readFile(join(dir, n), "utf8");
      if (!text.includes(`<${email}>`)) continue;
      const body = text.split("\r\n\r\n").slice(1).join("\r\n\r\n") || text;
      const code = body.match(/(?<!\d)\d{6}(?!\d)/);
      if (code) return code[0];
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no OTP mail for ${email} in ${dir}`);
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function sample(len, seed) {
  const out = Buffer.alloc(len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x >>> 24;
  }
  return out;
}
