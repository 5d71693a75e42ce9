//! The plantwire binary: panic hook, crypto provider, command line; everything else is the library.
//! Keep this file thin.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    plantwire::telemetry::install_panic_hook();
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("plantwire: a TLS crypto provider was already installed");
    }
    plantwire::cli::run(plantwire::cli::Cli::parse())
}
