//! The forward cursor of one site: the highest seq whose PubAck (and every lower seq's) came
//! back, kept in `<sites>/<site>/nats-forward.json`, written atomically (temp, fsync, rename, fsync dir).
//!
//! A file beside the replica rather than a table: the replica is the site's log copied verbatim
//! (its own tables belong to the site), the cursor moves and goes with the site's directory, and
//! HQ's own store needs no schema change for a value that only one task reads and writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "nats-forward.json";

/// What the file holds (version 1). The cursor counts for `stream` only: forwarding into
/// another stream starts again from seq 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub v: u8,
    pub stream: String,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cannot use the forward cursor {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the forward cursor {path} is not valid: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the forward cursor write was cancelled: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The acknowledged seq for `stream` in `dir` (0 when none was written, or for another stream).
pub fn load(dir: &Path, stream: &str) -> Result<u64, CursorError> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(CursorError::Io { path, source }),
    };
    let c: Cursor =
        serde_json::from_slice(&bytes).map_err(|source| CursorError::Decode { path, source })?;
    Ok(if c.stream == stream { c.seq } else { 0 })
}

/// Writes the cursor durably, off the async threads.
pub async fn store(dir: &Path, stream: &str, seq: u64) -> Result<(), CursorError> {
    let dir = dir.to_path_buf();
    let cursor = Cursor {
        v: 1,
        stream: stream.to_string(),
        seq,
    };
    tokio::task::spawn_blocking(move || write(&dir, &cursor)).await?
}

fn write(dir: &Path, cursor: &Cursor) -> Result<(), CursorError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CursorError::Io { path, source }
    };
    let bytes = serde_json::to_vec(cursor).map_err(|source| CursorError::Decode {
        path: path.clone(),
        source,
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cursor_survives_a_rewrite_and_counts_for_its_stream_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "S").unwrap(), 0);
        store(dir.path(), "S", 7).await.unwrap();
        store(dir.path(), "S", 9).await.unwrap();
        assert_eq!(load(dir.path(), "S").unwrap(), 9);
        assert_eq!(load(dir.path(), "OTHER").unwrap(), 0);
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(matches!(
            load(dir.path(), "S"),
            Err(CursorError::Decode { .. })
        ));
    }
}
