//! Helpers shared by the benchmarks: medians, rates and timing an outside command.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use age::secrecy::ExposeSecret;
use hashdrop_crypto::AgeIdentity;
use std::time::Instant;

/// The median of `xs` (the upper one of an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// 10^6 bytes per second.
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// Wall-clock seconds of `cmd` reading `input` on stdin, output discarded; `None`
/// when it cannot start or fails.
pub fn time_command(cmd: &mut Command, input: &Path) -> Option<f64> {
    let file = std::fs::File::open(input).ok()?;
    let start = Instant::now();
    let status = cmd
        .stdin(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| start.elapsed().as_secs_f64())
}

/// The stock `age` command on the benchmark's data: `age -r` of the plaintext file and
/// `age -d` of the sealed one (both page-cached, output discarded).
pub struct AgeCommand {
    recipient: String,
    key: PathBuf,
    plain: PathBuf,
    sealed: PathBuf,
}

impl AgeCommand {
    /// Writes into `dir` what the command reads: `identity` (which opens `sealed`), the
    /// plaintext from `plaintext`, and `sealed`.
    pub fn new(
        dir: &Path,
        identity: &AgeIdentity,
        mut plaintext: impl Read,
        sealed: &[u8],
    ) -> Self {
        let age = Self {
            recipient: identity.to_recipient().to_string(),
            key: dir.join("key.txt"),
            plain: dir.join("plain"),
            sealed: dir.join("sealed.age"),
        };
        let secret = identity.to_secret_string();
        std::fs::write(&age.key, secret.expose_secret()).unwrap();
        let mut plain = std::fs::File::create(&age.plain).unwrap();
        std::io::copy(&mut plaintext, &mut plain).unwrap();
        std::fs::write(&age.sealed, sealed).unwrap();
        age
    }

    /// Times one encryption and one decryption of `size` bytes and pushes their MB/s
    /// onto `enc` and `dec` (nothing when `age` is missing or fails).
    pub fn round(&self, size: u64, enc: &mut Vec<f64>, dec: &mut Vec<f64>) {
        if let Some(s) = time_command(
            Command::new("age").arg("-r").arg(&self.recipient),
            &self.plain,
        ) {
            enc.push(mb_per_s(size, s));
        }
        let mut decrypting = Command::new("age");
        decrypting.arg("-d").arg("-i").arg(&self.key);
        if let Some(s) = time_command(&mut decrypting, &self.sealed) {
            dec.push(mb_per_s(size, s));
        }
    }
}

/// `openssl speed -evp ALGO -bytes 65536 -seconds SECONDS`, in MB/s; `label` is how
/// openssl names the algorithm in its table.
pub fn openssl_speed(algo: &str, label: &str, seconds: u32) -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", algo, "-bytes", "65536"])
        .args(["-seconds", &seconds.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with(label))?;
    let kbs: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kbs * 1000.0 / 1e6)
}
