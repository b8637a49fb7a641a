//! `hashdrop`: the command-line client of Hashdrop. Files are encrypted here as
//! standard age files; the server only ever stores ciphertext.
#![forbid(unsafe_code)]

mod api;
mod cli;
mod cmd;
mod error;
mod home;
mod partial;
mod pipe;
mod qr;
mod sealed;
mod secrets;
mod util;
mod vault_store;

use std::process::ExitCode;

use clap::Parser;

use crate::api::Api;
use crate::cli::{AuthCmd, Cli, Command, FilesCmd, VaultCmd};
use crate::home::Home;

/// What every command gets.
#[derive(Debug)]
pub struct Ctx {
    /// The server client.
    pub api: Api,
    /// `--json`.
    pub json: bool,
    /// `-v`.
    pub verbose: bool,
}

impl Ctx {
    /// The state directory.
    pub fn home(&self) -> &Home {
        self.api.home()
    }

    /// Prints the result: `human` normally, `json` with `--json`.
    pub fn emit(&self, human: impl std::fmt::Display, json: serde_json::Value) {
        if self.json {
            println!("{json}");
        } else {
            // Human output carries server-provided text (names, messages).
            let text = util::printable(&human.to_string(), true);
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }

    /// A note for a person on stderr (suppressed with `--json`).
    pub fn note(&self, text: impl std::fmt::Display) {
        if !self.json {
            eprintln!("{}", util::printable(&text.to_string(), true));
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hashdrop: error: cannot start the async runtime ({e})");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (line, _) = error::one_line(&e);
            // Error lines quote the server's messages.
            eprintln!("hashdrop: error: {}", util::printable(&line, false));
            if json {
                println!("{}", error::to_json(&e));
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let home = Home::locate()?;
    let api = Api::new(&cli.server, home, cli.verbose, cli.insecure_http)?;
    let ctx = Ctx {
        api,
        json: cli.json,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Auth { cmd } => match cmd {
            AuthCmd::Register { email } => cmd::auth::register(&ctx, email).await,
            AuthCmd::Verify { email, otp } => cmd::auth::verify(&ctx, email, otp).await,
            AuthCmd::Login { email } => cmd::auth::login(&ctx, email).await,
            AuthCmd::Logout => cmd::auth::logout(&ctx).await,
            AuthCmd::DeleteAccount { yes } => cmd::auth::delete_account(&ctx, yes).await,
        },
        Command::Upload(args) => cmd::upload::run(&ctx, args).await,
        Command::Files { cmd } => match cmd {
            FilesCmd::List => cmd::files::list(&ctx).await,
            FilesCmd::Show {
                id_prefix,
                reveal_key,
            } => cmd::files::show(&ctx, &id_prefix, reveal_key).await,
            FilesCmd::Delete { id_prefix, yes } => cmd::files::delete(&ctx, &id_prefix, yes).await,
        },
        Command::Share { id_prefix, qr } => cmd::files::share(&ctx, &id_prefix, qr).await,
        Command::Decrypt(args) => cmd::decrypt::run(&ctx, args).await,
        Command::Vault { cmd } => match cmd {
            VaultCmd::Export { file } => cmd::vault::export(&ctx, &file),
            VaultCmd::Import { file } => cmd::vault::import(&ctx, &file),
        },
        Command::Version => cmd::version(&ctx).await,
    }
}
