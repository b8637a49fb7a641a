//! `hashdrop auth ...`.

use hashdrop_wire::{Credentials, LoginResponse, UserResponse, VerifyRequest};
use reqwest::StatusCode;
use serde_json::json;

use crate::api::Explain;
use crate::error::fail;
use crate::home::{Session, SESSION_FILE};
use crate::secrets::{self, SecretKind};
use crate::Ctx;

const MIN_PASSWORD: usize = 8;

fn email_arg(given: Option<String>) -> anyhow::Result<String> {
    let email = secrets::answer(given, None, "Email", "--email E")?;
    if !email.contains('@') {
        return Err(fail(
            "bad_email",
            format!("{email:?} is not an email address"),
            "pass --email you@example.com",
        ));
    }
    Ok(email)
}

/// `auth register`.
pub async fn register(ctx: &Ctx, email: Option<String>) -> anyhow::Result<()> {
    let email = email_arg(email)?;
    let password = secrets::secret(SecretKind::Password, true, MIN_PASSWORD)?;
    let body = Credentials {
        email: email.clone(),
        password,
    };
    let user: UserResponse = match ctx.api.public(|c| c.register(&body)).await? {
        Ok(u) => u,
        Err(e) if e.status == StatusCode::CONFLICT => return Err(fail(
            "already_registered",
            format!("{email} is already registered"),
            "log in with `hashdrop auth login`, or verify it with `hashdrop auth verify --email E`",
        )),
        Err(e) => return Err(e.into_user("account")),
    };
    if secrets::interactive() {
        ctx.note(format!(
            "Registered {}. A 6-digit code was sent to {email}.",
            user.email
        ));
        let otp = secrets::answer(None, None, "Verification code", "--otp CODE")?;
        verify_call(ctx, &email, &otp).await?;
        ctx.emit(
            format!("Account {email} verified. Log in with `hashdrop auth login`."),
            json!({"email": email, "id": user.id, "verified": true}),
        );
    } else {
        ctx.emit(
            format!(
                "Registered {email}. Check your mail for the 6-digit code, then run \
                 `hashdrop auth verify --email {email}`."
            ),
            json!({"email": email, "id": user.id, "verified": false}),
        );
    }
    Ok(())
}

async fn verify_call(ctx: &Ctx, email: &str, otp: &str) -> anyhow::Result<()> {
    let body = VerifyRequest {
        email: email.to_string(),
        otp: otp.trim().to_string(),
    };
    let Err(e) = ctx.api.public(|c| c.verify(&body)).await? else {
        return Ok(());
    };
    Err(match e.status.as_u16() {
        401 => fail(
            "bad_code",
            "wrong verification code for this email",
            "check the code in the mail and retry",
        ),
        400 if e.message().contains("expired") => fail(
            "code_expired",
            "the verification code has expired",
            "register again to get a new code",
        ),
        429 => fail(
            "too_many_attempts",
            format!("too many attempts ({})", e.message()),
            "wait, then register again to get a new code",
        ),
        _ => e.into_user("account"),
    })
}

/// `auth verify`.
pub async fn verify(ctx: &Ctx, email: String, otp: Option<String>) -> anyhow::Result<()> {
    let otp = secrets::answer(otp, Some("HASHDROP_OTP"), "Verification code", "--otp CODE")?;
    verify_call(ctx, &email, &otp).await?;
    ctx.emit(
        format!("Account {email} verified. Log in with `hashdrop auth login`."),
        json!({"email": email, "verified": true}),
    );
    Ok(())
}

/// `auth login`.
pub async fn login(ctx: &Ctx, email: Option<String>) -> anyhow::Result<()> {
    let remembered = ctx.home().session().ok().flatten().map(|s| s.email);
    let email = email_arg(email.or(remembered))?;
    let password = secrets::secret(SecretKind::Password, false, 1)?;
    let body = Credentials {
        email: email.clone(),
        password,
    };
    let tokens: LoginResponse = match ctx.api.public(|c| c.login(&body)).await? {
        Ok(t) => t,
        Err(e) if e.status == StatusCode::UNAUTHORIZED && e.message().contains("verified") => {
            return Err(fail(
                "not_verified",
                format!("{email} is not verified yet"),
                format!("run `hashdrop auth verify --email {email}` with the code from the mail"),
            ))
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return Err(fail(
                "bad_credentials",
                "wrong email or password",
                "check them and retry (HASHDROP_PASSWORD when not interactive)",
            ))
        }
        Err(e) => return Err(e.into_user("account")),
    };
    let _lock = ctx.home().lock("session")?;
    ctx.home().save_session(&Session {
        server: ctx.api.base(),
        email: email.clone(),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    })?;
    ctx.emit(
        format!("Logged in as {email}."),
        json!({"email": email, "server": ctx.api.base()}),
    );
    Ok(())
}

/// `auth logout`.
pub async fn logout(ctx: &Ctx) -> anyhow::Result<()> {
    let Some(session) = ctx.home().session()? else {
        ctx.emit("Not logged in.", json!({"logged_out": false}));
        return Ok(());
    };
    if let Err(e) = ctx.api.public(|c| c.revoke(&session.refresh_token)).await? {
        return Err(e.into_user("session"));
    }
    ctx.home().remove(SESSION_FILE)?;
    ctx.emit(
        format!("Logged out {}.", session.email),
        json!({"logged_out": true, "email": session.email}),
    );
    Ok(())
}

/// `auth delete-account`.
pub async fn delete_account(ctx: &Ctx, yes: bool) -> anyhow::Result<()> {
    let session = ctx.api.session()?;
    if !yes
        && !secrets::confirm(&format!(
            "Delete the account {} and every file in it?",
            session.email
        ))?
    {
        return Err(fail(
            "not_confirmed",
            "account not deleted",
            "pass --yes to delete without a question",
        ));
    }
    let password = secrets::secret(SecretKind::Password, false, 1)?;
    let body = Credentials {
        email: session.email.clone(),
        password,
    };
    if let Err(e) = ctx.api.authed(|c| c.delete_account(&body)).await? {
        return Err(if e.status == StatusCode::UNAUTHORIZED {
            fail(
                "bad_credentials",
                "wrong password",
                "retry with the account password",
            )
        } else {
            e.into_user("account")
        });
    }
    ctx.home().remove(SESSION_FILE)?;
    ctx.emit(
        format!(
            "Deleted the account {} and its files. The local vault was kept in {}.",
            session.email,
            ctx.home().dir().display()
        ),
        json!({"deleted": true, "email": session.email}),
    );
    Ok(())
}
