//! Secrets and the server-side cryptography: keyed hashes, password hashing, JWTs.

use std::path::Path;

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm as ArgonAlg, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::AuthConfig;

type HmacSha256 = Hmac<Sha256>;

/// Secret material, from config or generated into `{data_dir}/secrets.toml`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    /// HS256 signing key for access tokens.
    pub jwt_secret: String,
    /// Key for every keyed hash and URL signature.
    pub hmac_secret: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// Uses configured secrets, else reads `secrets.toml` from the data dir, else
    /// generates one there (mode 0600) so restarts keep sessions and links valid.
    pub fn load_or_create(data_dir: &Path, auth: &AuthConfig) -> anyhow::Result<Secrets> {
        if let (Some(j), Some(h)) = (&auth.jwt_secret, &auth.hmac_secret) {
            return Ok(Secrets {
                jwt_secret: j.clone(),
                hmac_secret: h.clone(),
            });
        }
        let path = data_dir.join("secrets.toml");
        let stored: Secrets = if path.exists() {
            let text = std::fs::read_to_string(&path).context("reading secrets.toml")?;
            figment::Figment::from(figment::providers::Serialized::defaults(Secrets {
                jwt_secret: String::new(),
                hmac_secret: String::new(),
            }))
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&text))
            .extract()
            .context("parsing secrets.toml")?
        } else {
            let s = Secrets {
                jwt_secret: random_hex(32),
                hmac_secret: random_hex(32),
            };
            let text = format!(
                "# Generated on first start. Keep private; identical on every instance.\n\
                 jwt_secret = \"{}\"\nhmac_secret = \"{}\"\n",
                s.jwt_secret, s.hmac_secret
            );
            write_private(&path, text.as_bytes())?;
            s
        };
        Ok(Secrets {
            jwt_secret: auth.jwt_secret.clone().unwrap_or(stored.jwt_secret),
            hmac_secret: auth.hmac_secret.clone().unwrap_or(stored.hmac_secret),
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Keyed hashing and signing with the server's HMAC secret. Each use passes its own
/// domain label so a value computed for one purpose is useless for another.
#[derive(Clone)]
pub struct Keys {
    hmac_key: Vec<u8>,
    jwt_enc: EncodingKey,
    jwt_dec: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Builds keys from secrets.
    pub fn new(s: &Secrets) -> Keys {
        Keys {
            hmac_key: s.hmac_secret.as_bytes().to_vec(),
            jwt_enc: EncodingKey::from_secret(s.jwt_secret.as_bytes()),
            jwt_dec: DecodingKey::from_secret(s.jwt_secret.as_bytes()),
        }
    }

    /// HMAC-SHA256(domain || 0 || data) as raw bytes.
    pub fn mac(&self, domain: &str, data: &[u8]) -> [u8; 32] {
        let mut m = HmacSha256::new_from_slice(&self.hmac_key).expect("any key length");
        m.update(domain.as_bytes());
        m.update(&[0]);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Hex keyed hash.
    pub fn keyed_hash(&self, domain: &str, data: &[u8]) -> String {
        hex::encode(self.mac(domain, data))
    }

    /// Constant-time check of a hex MAC.
    pub fn verify_mac(&self, domain: &str, data: &[u8], hex_mac: &str) -> bool {
        use subtle::ConstantTimeEq;
        match hex::decode(hex_mac) {
            Ok(given) => self.mac(domain, data).as_slice().ct_eq(&given).into(),
            Err(_) => false,
        }
    }

    /// `usrh-{hmac(user_id)}`: the owner's opaque prefix in object keys and links.
    pub fn user_hash(&self, user_id: &str) -> String {
        let full = self.keyed_hash("user-hash", user_id.as_bytes());
        format!("usrh-{}", &full[..32])
    }

    /// Issues an HS256 access token.
    pub fn issue_access_token(&self, user_id: &str, ttl_secs: u64) -> anyhow::Result<String> {
        let now = crate::domain::time::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + ttl_secs as i64,
            iss: ISSUER.to_string(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.jwt_enc,
        )?)
    }

    /// Verifies an access token; the algorithm is pinned to HS256 so a token
    /// claiming `none` or an asymmetric algorithm is rejected.
    pub fn verify_access_token(&self, token: &str) -> Option<String> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.jwt_dec, &v)
            .ok()
            .map(|d| d.claims.sub)
    }
}

const ISSUER: &str = "hashdrop";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
    iss: String,
}

/// Argon2id hasher with configured cost.
#[derive(Debug, Clone)]
pub struct PasswordHasherCfg {
    params: Params,
}

impl PasswordHasherCfg {
    /// From config.
    pub fn new(auth: &AuthConfig) -> anyhow::Result<Self> {
        let params = Params::new(
            auth.argon2_m_cost_kib,
            auth.argon2_t_cost,
            auth.argon2_p_cost,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        Ok(PasswordHasherCfg { params })
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(ArgonAlg::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes off the async executor: argon2 is deliberately slow.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let a = self.argon();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            a.hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
        })
        .await?
    }

    /// Verifies off the async executor. Parameters come from the stored hash.
    pub async fn verify(&self, password: String, hash: String) -> anyhow::Result<bool> {
        let a = self.argon();
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("bad hash: {e}"))?;
            Ok(a.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await?
    }
}

/// A uniformly random 6-digit code.
pub fn generate_otp() -> String {
    use rand::Rng;
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&Secrets {
            jwt_secret: "j".repeat(32),
            hmac_secret: "h".repeat(32),
        })
    }

    #[test]
    fn jwt_round_trip_and_tamper() {
        let k = keys();
        let t = k.issue_access_token("u1", 60).unwrap();
        assert_eq!(k.verify_access_token(&t).as_deref(), Some("u1"));
        // Someone else's claims under this signature are refused.
        let other = k.issue_access_token("u2", 60).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert!(k.verify_access_token(&forged).is_none());
        // A token signed with another key is refused.
        let stranger = Keys::new(&Secrets {
            jwt_secret: "x".repeat(32),
            hmac_secret: "h".repeat(32),
        });
        assert!(k
            .verify_access_token(&stranger.issue_access_token("u1", 60).unwrap())
            .is_none());
        // An unsigned token ("alg": "none") is refused.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            t.split('.').nth(1).unwrap()
        );
        assert!(k.verify_access_token(&none).is_none());
    }

    #[test]
    fn expired_access_token_is_refused() {
        let k = keys();
        let now = crate::domain::time::now_ms() / 1000;
        let claims = Claims {
            sub: "u1".into(),
            iat: now - 1000,
            exp: now - 60,
            iss: ISSUER.into(),
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.jwt_enc).unwrap();
        assert!(k.verify_access_token(&t).is_none());
    }

    #[test]
    fn mac_domains_differ() {
        let k = keys();
        assert_ne!(k.keyed_hash("a", b"x"), k.keyed_hash("b", b"x"));
        let m = k.keyed_hash("a", b"x");
        assert!(k.verify_mac("a", b"x", &m));
        assert!(!k.verify_mac("a", b"y", &m));
        assert!(k.user_hash("id").starts_with("usrh-"));
    }

    #[test]
    fn otp_is_six_digits() {
        for _ in 0..100 {
            let o = generate_otp();
            assert_eq!(o.len(), 6);
            assert!(o.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
