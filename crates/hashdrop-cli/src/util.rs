//! Small helpers: time, sizes, progress bars.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// RFC 3339 time `after` from now.
pub fn rfc3339_after(after: std::time::Duration) -> anyhow::Result<String> {
    let t = OffsetDateTime::now_utc() + after;
    Ok(t.format(&Rfc3339)?)
}

/// `1.5 MiB` style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `text` made safe for a terminal: control characters (escape sequences, carriage
/// returns, bells, C1 codes) and bidirectional-override marks become visible `\u{..}`
/// escapes, so a server or a file name cannot move the cursor, rewrite the screen or
/// reorder what is shown. Newlines stay when `keep_newlines` (our own multi-line output).
pub fn printable(text: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && !(keep_newlines && c == '\n')) || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A byte progress bar on stderr, hidden unless stderr is a terminal.
pub fn progress(len: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_a_terminal_would_obey() {
        let hostile = "a\u{1b}]0;title\u{7}b\u{1b}[2Jc\rd\u{9b}e\u{202e}f\ng";
        assert_eq!(
            printable(hostile, false),
            "a\\u{1b}]0;title\\u{7}b\\u{1b}[2Jc\\u{d}d\\u{9b}e\\u{202e}f\\u{a}g"
        );
        assert!(printable(hostile, true).ends_with("f\ng"));
        assert_eq!(
            printable("plain naïve ✓ name.txt", false),
            "plain naïve ✓ name.txt"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
