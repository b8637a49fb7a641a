//! The commands.

pub mod auth;
pub mod decrypt;
pub mod files;
pub mod parts;
pub mod upload;
pub mod vault;

use crate::Ctx;

/// `hashdrop version`.
pub async fn version(ctx: &Ctx) -> anyhow::Result<()> {
    let ours = env!("CARGO_PKG_VERSION");
    let server = match ctx.api.public(|c| c.cli_version()).await {
        Ok(Ok(v)) => Some(v.compatible_version),
        _ => None,
    };
    let human = match &server {
        Some(v) if v != ours => format!(
            "hashdrop {ours} (server {} expects CLI {v}; consider upgrading)",
            ctx.api.base()
        ),
        Some(v) => format!(
            "hashdrop {ours} (server {} expects CLI {v})",
            ctx.api.base()
        ),
        None => format!("hashdrop {ours}"),
    };
    ctx.emit(
        human,
        serde_json::json!({"version": ours, "server_compatible_version": server}),
    );
    Ok(())
}
