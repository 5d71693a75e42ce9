//! lazyfs: mounts a backing directory through FUSE so that file data is durable only after fsync,
//! and simulates a power cut (or a full disk) on command. A test tool; see docs/testing.md.

mod control;
mod fs;
mod overlay;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use fuser::{Config, MountOption, Session};

const USAGE: &str = "usage: lazyfs mount <backing-dir> <mountpoint> <control-socket>
       lazyfs ctl <control-socket> cut|cut torn|full|space|delay <ms>|status";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["mount", backing, mountpoint, socket] => {
            mount(backing.into(), mountpoint.into(), socket.into())
        }
        ["ctl", socket, command @ ..] if !command.is_empty() => {
            match control::send(socket.as_ref(), &command.join(" ")) {
                Ok(reply) => {
                    println!("{reply}");
                    if reply.starts_with("ok") {
                        Ok(())
                    } else {
                        return ExitCode::FAILURE;
                    }
                }
                Err(e) => Err(e),
            }
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazyfs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mounts, prints `ready` once the mount is in place, and serves until unmounted or killed.
fn mount(backing: PathBuf, mountpoint: PathBuf, socket: PathBuf) -> std::io::Result<()> {
    let backing = backing.canonicalize()?;
    let state = Arc::new(Mutex::new(fs::State::new(backing)));
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("lazyfs".into()),
        MountOption::DefaultPermissions,
    ];
    // Other requests go on while one fsync waits out its delay.
    config.n_threads = Some(4);
    let session = Session::new(
        fs::LazyFs {
            state: state.clone(),
        },
        &mountpoint,
        &config,
    )?;
    std::thread::spawn(move || control::serve(listener, state));
    println!("ready");
    session.run()
}
