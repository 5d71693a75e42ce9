//! What one replicated entry becomes in JetStream: its subject `plantwire.<site>.<class>`, the
//! `Nats-Msg-Id` `<site>:<seq>` that deduplicates it, and its JSON payload (format version 1).

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::log::Log;
use crate::log::read::ReadError;
use crate::retention::Class;
use crate::store::{ReadTx, RecordMeta};

/// The version of the payload below (header `Plantwire-Format`).
pub const FORMAT: &str = "1";

/// One message, ready to publish.
#[derive(Debug)]
pub struct Message {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// The JSON payload. `state` is `entry` (all fields), `purged` (retention removed the body at
/// HQ: the clear fields and hashes stay, `body` is absent), `stub` (the site does not ship the
/// entry's class: `ts`, `prev`, `hash` and, for chain v2, `digest` only) or `absent` (no record
/// at this seq: only `site` and `seq`). Hashes are lower-case hex; `body` is the entry's own JSON
/// body. `digest` (chain-v2 entries, in every state that has a record) is the content digest
/// `SHA-256(kind | stream | author | body)` that `hash` commits to instead of the body, so a
/// consumer can check a stub's or a purged entry's link without its content; chain-v1 entries
/// have none. Adding `digest` kept format 1: a reader that ignores unknown fields is unaffected.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    v: u8,
    state: &'static str,
    site: &'a str,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("entry {seq}: the record's clear fields cannot be decoded: {source}")]
    Meta {
        seq: u64,
        #[source]
        source: crate::store::CodecError,
    },
    #[error("entry {seq}: the body is not JSON: {source}")]
    Body {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The subject of `site`'s entries of `class`. NATS splits subjects at '.', which a site name may
/// hold, so a '.' in the site becomes '~' (never part of a site name: subjects stay distinct).
pub fn subject(site: &str, class: Class) -> String {
    format!("plantwire.{}.{}", site.replace('.', "~"), class.name())
}

/// The deduplication id: the site's real name and the seq.
pub fn msg_id(site: &str, seq: u64) -> String {
    format!("{site}:{seq}")
}

/// The message for `seq` of the replica `log`, read in `rtx`. Every seq gives a message, so the
/// stream holds each seq once whatever retention did; a record gone altogether is published
/// under the `events` class, its stream being unknown.
pub fn build(log: &Log, rtx: &ReadTx, seq: u64) -> Result<Message, MessageError> {
    let site: &str = log.site();
    let blank = Payload {
        v: 1,
        state: "absent",
        site,
        seq,
        ts: None,
        kind: None,
        stream: None,
        author: None,
        body: None,
        prev: None,
        hash: None,
        digest: None,
    };
    let (class, state, payload) = match rtx.log_raw(seq)? {
        None => (Class::Events, "absent", serde_json::to_vec(&blank)?),
        Some(raw) => {
            let (meta, _) =
                RecordMeta::decode(&raw).map_err(|source| MessageError::Meta { seq, source })?;
            let class = Class::of(&meta.stream);
            let digest = meta.digest.map(hex::encode);
            if meta.is_stub() {
                // Its class is not shipped, so unknown here: filed like an absent record.
                let p = Payload {
                    state: "stub",
                    ts: Some(meta.ts),
                    prev: Some(hex::encode(meta.prev)),
                    hash: Some(hex::encode(meta.hash)),
                    digest,
                    ..blank
                };
                (Class::Events, "stub", serde_json::to_vec(&p)?)
            } else if meta.purged {
                let p = Payload {
                    state: "purged",
                    ts: Some(meta.ts),
                    kind: Some(&meta.kind),
                    stream: Some(&meta.stream),
                    author: Some(&meta.author),
                    prev: Some(hex::encode(meta.prev)),
                    hash: Some(hex::encode(meta.hash)),
                    digest,
                    ..blank
                };
                (class, "purged", serde_json::to_vec(&p)?)
            } else {
                let e = log.decode(seq, &raw)?;
                let body: &RawValue = serde_json::from_slice(&e.body)
                    .map_err(|source| MessageError::Body { seq, source })?;
                let p = Payload {
                    state: "entry",
                    ts: Some(e.ts),
                    kind: Some(&e.kind),
                    stream: Some(&e.stream),
                    author: Some(&e.author),
                    body: Some(body),
                    prev: Some(hex::encode(e.prev)),
                    hash: Some(hex::encode(e.hash)),
                    digest,
                    ..blank
                };
                (class, "entry", serde_json::to_vec(&p)?)
            }
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        msg_id(site, seq).as_str(),
    );
    headers.insert("Plantwire-Format", FORMAT);
    headers.insert("Plantwire-State", state);
    Ok(Message {
        subject: subject(site, class),
        headers,
        payload: Bytes::from(payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_keep_sites_apart_and_ids_keep_the_real_name() {
        assert_eq!(subject("north", Class::Alarms), "plantwire.north.alarms");
        assert_eq!(subject("a.b", Class::Chat), "plantwire.a~b.chat");
        assert_ne!(subject("a.b", Class::Chat), subject("a_b", Class::Chat));
        assert_eq!(msg_id("a.b", 42), "a.b:42");
    }
}
