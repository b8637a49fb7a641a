//! Builds the recipient page (`web/` at the workspace root) into `$OUT_DIR/web`, where
//! `src/web.rs` embeds it: the server binary carries its page and needs no files at
//! run time. Needs node and npm; runs `npm ci` only when `web/node_modules` is missing
//! or older than `web/package-lock.json`, and esbuild only when a web source changed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("web");
    for input in [
        "src",
        "package.json",
        "package-lock.json",
        "build.mjs",
        "tsconfig.json",
    ] {
        println!("cargo::rerun-if-changed={}", web.join(input).display());
    }
    println!("cargo::rerun-if-env-changed=HASHDROP_NPM");
    // sqlx::migrate! embeds migrations/ at compile time; with a build script present,
    // cargo only notices a new migration file if the script says to watch the folder.
    println!("cargo::rerun-if-changed=migrations");

    let npm = std::env::var("HASHDROP_NPM").unwrap_or_else(|_| "npm".into());
    if node_modules_stale(&web) {
        run(
            Command::new(&npm).args(["ci", "--no-audit", "--no-fund"]),
            &web,
            &npm,
        );
    }
    run(
        Command::new("node").arg("build.mjs").arg(&out),
        &web,
        "node",
    );
}

/// `npm ci` records what it installed in `node_modules/.package-lock.json`; it is
/// stale when missing or older than the committed lockfile.
fn node_modules_stale(web: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&web.join("node_modules/.package-lock.json")),
        modified(&web.join("package-lock.json")),
    ) {
        (Some(installed), Some(wanted)) => installed < wanted,
        _ => true,
    }
}

fn run(cmd: &mut Command, dir: &Path, tool: &str) {
    match cmd.current_dir(dir).status() {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`{tool}` failed ({s}) while building the web page in {}",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(&format!(
            "building hashdrop-server needs Node.js and npm for its web page, and `{tool}` was not found: install them (Debian: apt-get install nodejs npm)"
        )),
        Err(e) => fail(&format!("cannot run `{tool}`: {e}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
