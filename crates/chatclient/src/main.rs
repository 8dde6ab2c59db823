//! `chatclient`: the interactive terminal client of clusterchat.
//!
//! Two threads share one connection:
//! - the **main thread** reads lines with rustyline (editing, history), parses them into a
//!   [`command::Command`] and sends the request; it never waits for a reply;
//! - the **reader thread** reads every frame the server sends, lets the shared
//!   [`state::ClientState`] match it (by `reqid`, or drop it as a duplicate by conversation and
//!   `seq`) and prints it through rustyline's external printer, which redraws the line being
//!   typed instead of garbling it; it also sends the receipts (RECV) that are due.
//!
//! Parsing ([`command`]), wording ([`render`]) and client state ([`state`]: the session, its
//! friends and groups in [`contacts`], its receipts in [`receipts`]) are pure and unit-tested;
//! [`repl`] touches the socket and, with [`terminal`] (a password read without echo), the
//! terminal; [`history_file`] says where the line history is kept between runs; [`tls`] sets up
//! `--tls` (the roots to trust, the name to verify).

mod command;
mod contacts;
mod escape;
mod history_file;
mod receipts;
mod render;
mod repl;
mod state;
mod terminal;
mod tls;

use clap::Parser;
use std::process::ExitCode;

/// Interactive chat client: line editing, history, `help` for the commands.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Server host name or address.
    #[arg(default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(default_value_t = 6000)]
    port: u16,
    /// Connect over TLS (a server started with --tls-cert/--tls-key), verifying its
    /// certificate against --ca, or else the system's trusted roots.
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA (or the server's self-signed certificate) to trust, instead of the
    /// system's roots. Implies --tls.
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (and the SNI sent), when it differs from
    /// HOST: say, connecting by IP address to a server whose certificate names a host.
    /// Implies --tls.
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tls = if args.tls || args.ca.is_some() || args.tls_name.is_some() {
        match tls::setup(&args.host, args.ca.as_deref(), args.tls_name.as_deref()) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("chatclient: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    match crate::repl::run(&args.host, args.port, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatclient: {e}");
            ExitCode::FAILURE
        }
    }
}
