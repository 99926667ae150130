//! The `cozyform` binary: parse arguments, build the runtime, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cozyform::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cozyform::commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprint!("{}", cozyform::commands::render_error(&e));
            ExitCode::from(1)
        }
    }
}
