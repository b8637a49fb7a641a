//! Accounts: the rules for addresses and passwords.

use super::error::{Error, Result};

/// Longest address any account can have (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest password any account can have, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A trimmed, lowercased address with a local part and a dotted domain.
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_ascii_lowercase();
    let valid = e.len() <= MAX_EMAIL_LEN
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(Error::Invalid("invalid email address".into()))
    }
}

/// 8 to 128 characters.
pub fn check_password(p: &str) -> Result<()> {
    let n = p.chars().count();
    if !(8..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(Error::Invalid(
            "password must be 8 to 128 characters".into(),
        ));
    }
    Ok(())
}

/// A six-digit code as typed by a person (surrounding spaces ignored).
pub fn is_well_formed_otp(otp: &str) -> bool {
    otp.len() == 6 && otp.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized_or_refused() {
        assert_eq!(normalize_email(" A@Example.COM ").unwrap(), "a@example.com");
        for bad in [
            "a",
            "@x.y",
            "a@x",
            "a@.x",
            "a b@x.y",
            &format!("{}@x.y", "a".repeat(260)),
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_and_codes_have_their_lengths() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"é".repeat(129)).is_err());
        assert!(is_well_formed_otp("012345"));
        assert!(!is_well_formed_otp("01234a"));
    }
}
