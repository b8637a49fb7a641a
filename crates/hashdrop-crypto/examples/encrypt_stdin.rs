//! Encrypts stdin to stdout in vault mode with fresh keys, like `age -r`: the program
//! behind the peak-memory measurement in docs/BENCHMARKS.md.

use std::io;

use hashdrop_crypto::{encrypt, to_hex, AgeIdentity, Recipients};

fn main() -> Result<(), hashdrop_crypto::CryptoError> {
    let (file, account) = (AgeIdentity::generate(), AgeIdentity::generate());
    let summary = encrypt(
        io::stdin().lock(),
        io::stdout().lock(),
        Recipients::Vault {
            file: &file.to_recipient(),
            account: &account.to_recipient(),
        },
    )?;
    eprintln!(
        "{} plaintext bytes, keyed digest {}",
        summary.plaintext_len,
        to_hex(&summary.keyed_digest)
    );
    Ok(())
}
