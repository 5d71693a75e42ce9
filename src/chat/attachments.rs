//! Attachments: type by content sniffing (never the client's claim), sealed 64 KiB chunks in the
//! store, and access only for the uploader and members of a conversation where it was posted.

use serde::{Deserialize, Serialize};

use super::Actor;
use crate::error::Rejection;
use crate::log::{AppendError, Log, SubmitError, Tx};
use crate::store::{AttachmentRef, AttachmentRow, ReadTx, StoreError};

/// Bytes per stored chunk.
pub const CHUNK: usize = 64 << 10;
const MAX_NAME: usize = 128;

/// What an upload returns.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentInfo {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

impl From<&AttachmentRow> for AttachmentInfo {
    fn from(a: &AttachmentRow) -> Self {
        Self {
            id: a.id.clone(),
            name: a.name.clone(),
            mime: a.mime.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
        }
    }
}

/// The media type of `data` by its content: PNG, JPEG, GIF, WebP, PDF, or UTF-8 text (CSV when
/// the name says so). Anything else is `None`.
pub fn sniff(data: &[u8], name: &str) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        return Some("image/gif");
    }
    if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if data.starts_with(b"%PDF-") {
        return Some("application/pdf");
    }
    let text = std::str::from_utf8(data).ok()?;
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
    {
        return None;
    }
    if name.to_ascii_lowercase().ends_with(".csv") {
        Some("text/csv")
    } else {
        Some("text/plain")
    }
}

/// The extensions a file of this type may keep; the first is added when the name has none of them.
fn extensions(mime: &str) -> &'static [&'static str] {
    match mime {
        "image/png" => &["png"],
        "image/jpeg" => &["jpg", "jpeg"],
        "image/gif" => &["gif"],
        "image/webp" => &["webp"],
        "application/pdf" => &["pdf"],
        "text/csv" => &["csv"],
        _ => &["txt", "log", "text"],
    }
}

/// A file name safe to show and to put in a header: no path, no control, format (bidi) characters
/// or quotes,
/// and an extension that matches the sniffed type (so `run.bat` that is text saves as `run.bat.txt`).
pub fn clean_name(name: &str, mime: &str) -> String {
    let base = crate::text::strip_format(name.rsplit(['/', '\\']).next().unwrap_or(""));
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\' | ';'))
        .take(MAX_NAME)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    let allowed = extensions(mime);
    let stem = if cleaned.is_empty() {
        "attachment".to_string()
    } else {
        cleaned
    };
    let ext = stem
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if allowed.contains(&ext.as_str()) {
        stem
    } else {
        format!("{stem}.{}", allowed[0])
    }
}

/// The associated data sealing chunk `n` of attachment `id` (HQ seals replicated ones alike).
pub fn chunk_aad(id: &str, n: u32) -> Vec<u8> {
    format!("att/{id}/{n}").into_bytes()
}

/// Stores an upload. The caller has already bounded its size. Refused with `quota_exceeded` (and
/// nothing stored) when the uploader's stored bytes would pass `quota`; the usage count moves in
/// the same commit as the rows.
pub async fn store(
    log: &Log,
    actor: &Actor,
    name: &str,
    data: Vec<u8>,
    quota: u64,
) -> Result<AttachmentInfo, SubmitError> {
    actor.require_poster().map_err(SubmitError::Rejected)?;
    if data.is_empty() {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "empty_attachment",
            "the upload is empty",
        )));
    }
    let Some(mime) = sniff(&data, name) else {
        return Err(SubmitError::Rejected(Rejection::invalid(
            "unsupported_type",
            "allowed are PNG, JPEG, GIF, WebP, PDF and plain text or CSV (checked by content)",
        )));
    };
    let id = super::random_id("a")?;
    let sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data));
    let mut chunks = Vec::new();
    for (n, part) in data.chunks(CHUNK).enumerate() {
        let n = u32::try_from(n)
            .map_err(|_| Rejection::invalid("too_large", "the upload is too large"))?;
        let sealed = log
            .seal_view(&chunk_aad(&id, n), part)
            .map_err(StoreError::Seal)?;
        chunks.push(sealed);
    }
    let row = AttachmentRow {
        id: id.clone(),
        size: data.len() as u64,
        sha256,
        mime: mime.to_string(),
        name: clean_name(name, mime),
        uploader: actor.user.clone(),
        created_at_us: log.now_us(),
        chunks: chunks.len() as u32,
    };
    let info = AttachmentInfo::from(&row);
    log.submit(move |tx| {
        let used = tx.views().attachment_usage(&row.uploader)?;
        if used.saturating_add(row.size) > quota {
            return Err(Rejection::invalid(
                "quota_exceeded",
                format!(
                    "this upload would pass your attachment quota of {quota} bytes ({used} in use)"
                ),
            )
            .into());
        }
        tx.views().add_attachment_usage(&row.uploader, row.size)?;
        tx.views().put_attachment(&row)?;
        tx.views()
            .put_attachment_unposted(row.created_at_us, &row.id)?;
        for (n, c) in chunks.iter().enumerate() {
            tx.views().put_attachment_chunk(&row.id, n as u32, c)?;
        }
        Ok(())
    })
    .await?;
    Ok(info)
}

fn may_access_read(rtx: &ReadTx, row: &AttachmentRow, user: &str) -> Result<bool, StoreError> {
    if row.uploader == user {
        return Ok(true);
    }
    for conv in rtx.attachment_convs(&row.id)? {
        if rtx.member(&conv, user)?.is_some_and(|m| m.active) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An attachment a sender may put on a message: their own upload, or one they can already see.
pub(crate) fn usable(tx: &mut Tx<'_>, id: &str, user: &str) -> Result<AttachmentRef, AppendError> {
    let missing = || {
        Rejection::invalid(
            "invalid_attachment",
            format!("no attachment {id:?} you can use"),
        )
    };
    let row = tx.views().attachment(id)?.ok_or_else(missing)?;
    let mut ok = row.uploader == user;
    if !ok {
        for conv in tx.views().attachment_convs(id)? {
            if tx.views().member(&conv, user)?.is_some_and(|m| m.active) {
                ok = true;
                break;
            }
        }
    }
    if !ok {
        return Err(missing().into());
    }
    Ok(AttachmentRef {
        id: row.id,
        name: row.name,
        mime: row.mime,
        size: row.size,
    })
}

/// The attachment, if `user` may see it (404 otherwise, to reveal nothing).
pub fn open_for(log: &Log, user: &str, id: &str) -> Result<AttachmentRow, SubmitError> {
    let storage = super::conversations::storage;
    let not_found = || {
        SubmitError::Rejected(Rejection::not_found(
            "no_such_attachment",
            "no attachment with this id",
        ))
    };
    let rtx = log.read().map_err(storage)?;
    let row = rtx.attachment(id).map_err(storage)?.ok_or_else(not_found)?;
    if !may_access_read(&rtx, &row, user).map_err(storage)? {
        return Err(not_found());
    }
    Ok(row)
}

/// Chunk `n` of an attachment, opened. Each call takes its own snapshot (chunks never change), so
/// a slow download pins nothing.
pub fn chunk(log: &Log, row: &AttachmentRow, n: u32) -> Result<Vec<u8>, StoreError> {
    let sealed =
        log.read()?
            .attachment_chunk(&row.id, n)?
            .ok_or_else(|| StoreError::MissingChunk {
                id: row.id.clone(),
                n,
            })?;
    Ok(log.open_view(&chunk_aad(&row.id, n), &sealed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content_not_name() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest", "x.exe"), Some("image/png"));
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01\0\0\0", "gauge.png"), None);
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0", "gauge.png"), None);
        assert_eq!(sniff(b"a,b\n1,2\n", "data.CSV"), Some("text/csv"));
        assert_eq!(sniff(b"hello", "notes"), Some("text/plain"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", "x"), Some("image/webp"));
    }

    #[test]
    fn names_lose_paths_and_quotes() {
        assert_eq!(
            clean_name("../../etc/pa\"ss;wd", "text/plain"),
            "passwd.txt"
        );
        assert_eq!(clean_name("", "image/png"), "attachment.png");
        assert_eq!(clean_name("C:\\x\\..hidden", "text/plain"), "hidden.txt");
        assert_eq!(clean_name("page.html", "text/plain"), "page.html.txt");
        assert_eq!(clean_name("Gauge.JPEG", "image/jpeg"), "Gauge.JPEG");
        assert_eq!(clean_name("x.png", "image/jpeg"), "x.png.jpg");
    }
}
