//! Entry point: block the daemon's signals before anything else (so none is delivered the
//! default way before the signalfd exists), then dispatch on argv.

use std::process::ExitCode;

use tern::cli::{self, Command};

fn main() -> ExitCode {
    if let Err(e) = tern::reactor::signals::block_handled() {
        eprintln!("tern: cannot block signals: {e}");
        return ExitCode::from(1);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::DaemonHelp) => {
            print!("{}", cli::DAEMON_USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!(
                "tern {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("TERN_GIT_COMMIT")
            );
            ExitCode::SUCCESS
        }
        Ok(Command::Daemon(opts)) => tern::daemon::run(opts),
        Err(msg) => {
            eprintln!("tern: {msg}");
            ExitCode::from(2)
        }
    }
}
