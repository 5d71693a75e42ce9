//! The control socket: one command per connection, one line back. `cut`, `cut torn`, `full`,
//! `space`, `delay <ms>`, `status`. A reply starts with `ok` or `err`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use crate::fs::{Shared, lock};

/// Answers commands on `socket` until the process ends.
pub fn serve(listener: UnixListener, state: Shared) {
    let mut rng = Rng::seeded();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let reply = answer(line.trim(), &state, &mut rng);
        let _ = writeln!(conn, "{reply}");
    }
}

fn answer(command: &str, state: &Shared, rng: &mut Rng) -> String {
    let mut st = lock(state);
    let (files, bytes) = st.pending();
    match command {
        "cut" => match st.cut(None) {
            Ok(()) => format!("ok dropped {files} files {bytes} bytes"),
            Err(e) => format!("err {e}"),
        },
        "cut torn" => {
            let mut kept = 0u64;
            let mut keep = |_page: u64| {
                let k = rng.next() & 1 == 1;
                kept += u64::from(k);
                k
            };
            match st.cut(Some(&mut keep)) {
                Ok(()) => format!("ok torn {files} files {bytes} bytes, {kept} pages kept"),
                Err(e) => format!("err {e}"),
            }
        }
        "full" => {
            st.full = true;
            "ok full".into()
        }
        "space" => {
            st.full = false;
            "ok space".into()
        }
        "status" => format!(
            "ok pending_files={files} pending_bytes={bytes} full={} dead={} paths={}",
            st.full,
            st.dead,
            st.pending_paths().join(",")
        ),
        other => match other.strip_prefix("delay ").map(str::parse::<u64>) {
            Some(Ok(ms)) => {
                st.sync_delay = std::time::Duration::from_millis(ms);
                format!("ok delay {ms} ms")
            }
            _ => format!("err unknown command {other:?}"),
        },
    }
}

/// Sends `command` to the lazyfs listening on `socket` and returns its reply line.
pub fn send(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut conn = UnixStream::connect(socket)?;
    writeln!(conn, "{command}")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    Ok(reply.trim().to_string())
}

/// xorshift64, seeded from the kernel: which pages a torn cut keeps.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let mut b = [0u8; 8];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
        Self(u64::from_le_bytes(b) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
