//! `chatclient`: the interactive terminal client of clusterchat (see [`clusterchat::cli`]).

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
}

fn main() -> ExitCode {
    let args = Args::parse();
    match clusterchat::cli::run(&args.host, args.port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatclient: {e}");
            ExitCode::FAILURE
        }
    }
}
