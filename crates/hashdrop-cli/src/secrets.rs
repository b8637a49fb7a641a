//! Secrets and other answers: from the environment when set, else prompted (without
//! echo for secrets) when stdin is a terminal, else a one-line error naming the
//! variable. Secrets never come from the command line (except `decrypt --key` and
//! `auth verify --otp`, whose help points to the file, variable and prompt instead).

use std::io::{self, BufRead, IsTerminal, Write};

use crate::error::fail;

/// The kinds of secret the CLI asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// Account password.
    Password,
    /// Vault passphrase.
    VaultPassword,
    /// Passphrase of a passphrase-mode file.
    Passphrase,
    /// Passphrase of a vault file being imported, when it differs from the local one.
    ImportVaultPassword,
}

impl SecretKind {
    /// The environment variable that supplies it.
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Password => "HASHDROP_PASSWORD",
            Self::VaultPassword => "HASHDROP_VAULT_PASSWORD",
            Self::Passphrase => "HASHDROP_PASSPHRASE",
            Self::ImportVaultPassword => "HASHDROP_IMPORT_VAULT_PASSWORD",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Password => "account password",
            Self::VaultPassword => "vault passphrase",
            Self::Passphrase => "file passphrase",
            Self::ImportVaultPassword => "passphrase of the vault being imported",
        }
    }
}

/// Whether we may prompt.
pub fn interactive() -> bool {
    io::stdin().is_terminal()
}

/// Reads a secret. `confirm` asks twice when prompting (new passwords, new
/// passphrases). `min_len` is enforced on every source.
pub fn secret(kind: SecretKind, confirm: bool, min_len: usize) -> anyhow::Result<String> {
    let value = match std::env::var(kind.env_var()) {
        Ok(v) if !v.is_empty() => v,
        _ if interactive() => {
            let label = kind.label();
            let mut first = rpassword::prompt_password(format!("{}: ", capitalize(label)))?;
            if first.ends_with('\r') {
                first.pop();
            }
            if confirm {
                let again = rpassword::prompt_password(format!("Confirm {label}: "))?;
                if again.trim_end_matches('\r') != first {
                    return Err(fail(
                        "mismatch",
                        format!("the two {label}s differ"),
                        "run the command again and type the same value twice",
                    ));
                }
            }
            first
        }
        _ => {
            return Err(fail(
                "no_secret",
                format!("no {} given", kind.label()),
                format!(
                    "set {} (stdin is not a terminal, so hashdrop cannot prompt)",
                    kind.env_var()
                ),
            ))
        }
    };
    if value.chars().count() < min_len {
        return Err(fail(
            "too_short",
            format!("the {} must be at least {min_len} characters", kind.label()),
            "choose a longer one",
        ));
    }
    Ok(value)
}

/// A visible answer (email, OTP): the flag, else the environment variable `env`,
/// else a prompt when interactive, else an error telling what to pass.
pub fn answer(
    given: Option<String>,
    env: Option<&str>,
    prompt: &str,
    flag_hint: &str,
) -> anyhow::Result<String> {
    if let Some(v) = given.filter(|v| !v.trim().is_empty()) {
        return Ok(v.trim().to_string());
    }
    if let Some(var) = env {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return Ok(v.trim().to_string());
        }
    }
    if interactive() {
        let mut stderr = io::stderr();
        write!(stderr, "{prompt}: ")?;
        stderr.flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        let v = line.trim().to_string();
        if !v.is_empty() {
            return Ok(v);
        }
    }
    let todo = match env {
        Some(var) => format!("pass {flag_hint} or set {var}"),
        None => format!("pass {flag_hint}"),
    };
    Err(fail(
        "missing",
        format!("no {} given", prompt.to_lowercase()),
        todo,
    ))
}

/// Asks a yes/no question on the terminal; `false` when not interactive.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !interactive() {
        return Ok(false);
    }
    let mut stderr = io::stderr();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
