//! `chatbench`: the load generator. Parses the command line and runs the scenario; a watchdog
//! ends the process if the run outlives its hard timeout.

use chatbench::cli::{run, Cli, LayoutArg};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = match cli.resolve() {
        Ok((_, common, settings)) => {
            let ab = common.compare.is_some() || common.layout == LayoutArg::Both;
            let rounds = if ab {
                2 * common.rounds.max(1) as u32
            } else {
                1
            };
            settings.timeout * rounds + Duration::from_secs(30)
        }
        Err(e) => {
            eprintln!("chatbench: {e}");
            return ExitCode::from(2);
        }
    };
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("chatbench: hard timeout ({} s): giving up", limit.as_secs());
        std::process::exit(3);
    });
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatbench: {e}");
            ExitCode::FAILURE
        }
    }
}
