//! `chatserver`: runs one clusterchat server until Ctrl+C or SIGTERM.

use clap::Parser;
use clusterchat::config::Config;
use clusterchat::server::RunningServer;
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(e) = config.check() {
        eprintln!("chatserver: {e}");
        return ExitCode::from(2);
    }
    let level = config
        .log_level
        .parse::<LevelFilter>()
        .unwrap_or(LevelFilter::Info);
    let log_config = ConfigBuilder::new()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .build();
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let _ = TermLogger::init(level, log_config, TerminalMode::Stderr, color);

    match clusterchat::os::raise_to_hard_limit() {
        Ok(n) => log::debug!("open-file limit: {n}"),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    }) {
        eprintln!("chatserver: cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let server = match RunningServer::start(&config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("chatserver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = stop_rx.recv();
    log::info!("shutting down");
    server.stop();
    ExitCode::SUCCESS
}

/// jemalloc instead of glibc's malloc: the log's frames are allocated on one thread (the log
/// writer) and freed on another (an IO loop), and glibc then takes the allocating arena's lock
/// for every free; profiled at window 16, the writer thread blocked on that lock (futex waits
/// in `__lll_lock_wait_private`) in ~30% of its context switches. Measured with
/// `benches/ab_pairs.sh` (BENCHMARKS.md, session 6): msgs/s 1.12x at window 1, idle RSS per
/// connection unchanged (mimalloc was as fast but doubled it).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
