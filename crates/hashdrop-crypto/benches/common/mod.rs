//! Helpers shared by the benchmarks: medians, rates and timing an outside command.

use std::process::{Command, Stdio};
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
pub fn time_command(cmd: &mut Command, input: &std::path::Path) -> Option<f64> {
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
