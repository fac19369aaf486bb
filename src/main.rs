//! Entry point: block the daemon's signals before anything else (so none is delivered the
//! default way before the signalfd exists), then dispatch on argv.

use std::process::ExitCode;

use tern::cli::{self, Command};

fn main() -> ExitCode {
    if let Err(e) = tern::reactor::signals::block_handled() {
        eprintln!("tern: cannot block signals: {e}");
        return ExitCode::from(1);
    }
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Installed as (or linked to) `pvcontrol`, the binary is the control client.
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "pvcontrol")
    {
        return tern::ctl::run(&args);
    }
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
        Ok(Command::Ctl(args)) => tern::ctl::run(&args),
        Ok(Command::SigHelp) => {
            print!("{}", cli::SIG_USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::SigVerify(opts)) => tern::sig_command::run(&opts),
        Err(msg) => {
            eprintln!("tern: {msg}");
            ExitCode::from(2)
        }
    }
}
