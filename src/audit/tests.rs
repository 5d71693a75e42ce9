//! The export format's golden vector (the bytes docs/log-format.md shows) and the check's rules
//! on hand-built exports.

use std::sync::Arc;

use super::format::{self, EntryLine, Header};
use super::key::SiteKey;
use super::{CheckFailure, check};
use crate::log::Entry;
use crate::log::checkpoint::Signer;
use crate::log::entry::{ChainVersion, GENESIS};

const SITE: &str = "plant-a";

fn entry(seq: u64, prev: [u8; 32], kind: &str, stream: &str, body: &str) -> Entry {
    let mut e = Entry {
        site: Arc::from(SITE),
        seq,
        ts: 1_764_561_600_000_000 + seq as i64,
        kind: kind.into(),
        stream: stream.into(),
        author: "system".into(),
        body: body.as_bytes().to_vec(),
        prev,
        hash: [0; 32],
        chain: ChainVersion::V1,
    };
    e.hash = e.computed_hash();
    e
}

/// Entry 1 an event, entry 2 the checkpoint that signs it: the smallest complete export.
fn golden_export() -> (String, SiteKey) {
    let signer = Signer::from_seed(SITE, &[7; 32]).unwrap();
    let e1 = entry(
        1,
        GENESIS,
        "event",
        "events/pump-7",
        r#"{"message":"pump 7 started"}"#,
    );
    let note = signer.sign(1, &e1.hash);
    let body = serde_json::to_string(&serde_json::json!({ "note": note })).unwrap();
    let e2 = entry(2, e1.hash, "log.checkpoint", "system/checkpoints", &body);
    let mut out = Vec::new();
    let header = Header {
        format: format::FORMAT.into(),
        version: format::VERSION_1,
        site: SITE.into(),
        from: 1,
        to: 1,
        end: 2,
        stream: None,
    };
    format::write_line(&mut out, &header).unwrap();
    for e in [&e1, &e2] {
        format::write_line(&mut out, &EntryLine::opened(e)).unwrap();
    }
    (
        String::from_utf8(out).unwrap(),
        SiteKey::new(SITE, signer.public_key()),
    )
}

const GOLDEN: &str = include_str!("golden_export.jsonl");

#[test]
fn the_export_format_is_byte_exact_and_verifies() {
    let (export, key) = golden_export();
    if std::env::var_os("PLANTWIRE_WRITE_GOLDEN").is_some() {
        std::fs::write("src/audit/golden_export.jsonl", &export).unwrap();
    }
    assert_eq!(export, GOLDEN);
    let r = check(&mut export.as_bytes(), &key).unwrap();
    assert_eq!(
        (r.entries, r.opened, r.checkpoints, r.signed_to),
        (2, 2, 1, 1)
    );
    assert_eq!(
        key.vkey(),
        "plantwire/plant-a+84432812+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
    );
}

fn fails_at(export: &str, key: &SiteKey) -> u64 {
    let r: Result<_, CheckFailure> = check(&mut export.as_bytes(), key);
    r.expect_err("the export must not verify").line
}

#[test]
fn every_changed_field_fails_naming_its_line() {
    let (export, key) = golden_export();
    let lines: Vec<&str> = export.lines().collect();
    // Every character of every line, changed to another one, fails on that line (or, for a
    // line that no longer parses as its own kind, still on that line).
    for (i, line) in lines.iter().enumerate() {
        for (at, ch) in line.char_indices() {
            let other = if ch == '0' { '1' } else { '0' };
            let mut changed = line.to_string();
            changed.replace_range(at..at + ch.len_utf8(), &other.to_string());
            let mut all = lines.clone();
            all[i] = &changed;
            let text = all.join("\n") + "\n";
            assert_eq!(
                fails_at(&text, &key),
                i as u64 + 1,
                "line {} char {at}",
                i + 1
            );
        }
    }
}

#[test]
fn a_purged_entry_is_reported_not_damage_but_a_kept_one_is_still_checked() {
    let (export, key) = golden_export();
    let lines: Vec<&str> = export.lines().collect();
    let mut line: EntryLine = serde_json::from_str(lines[1]).unwrap();
    line.body = None;
    line.withheld = Some(format::Withheld::Purged);
    let purged = serde_json::to_string(&line).unwrap();
    let text = [lines[0], &purged, lines[2]].join("\n") + "\n";
    let r = check(&mut text.as_bytes(), &key).unwrap();
    assert_eq!(r.purged, vec![[1, 1]]);
    assert_eq!((r.opened, r.withheld), (1, 1));
    // Its hash is no longer recomputed: a change to it shows on the next line, whose prev no
    // longer links.
    let changed = purged.replacen("\"hash\":\"5", "\"hash\":\"6", 1);
    let broken = [lines[0], &changed, lines[2]].join("\n") + "\n";
    assert_eq!(fails_at(&broken, &key), 3);
    let changed = purged.replacen("\"prev\":\"0", "\"prev\":\"1", 1);
    let text = [lines[0], &changed, lines[2]].join("\n") + "\n";
    assert_eq!(fails_at(&text, &key), 2);
}

/// A version 2 export of chain-v2 entries: their lines carry `chain` and `digest` and verify.
/// Withheld, such an entry is still re-hashed from its digest (a changed `ts` fails on its own
/// line, where a chain-v1 line would pass); a line without `chain` and `digest`, or a chain-v2
/// line under a version 1 header, fails where it is.
#[test]
fn a_version_2_export_rehashes_chain_v2_entries_even_withheld() {
    let signer = Signer::from_seed(SITE, &[7; 32]).unwrap();
    let v2 = |mut e: Entry| {
        e.chain = ChainVersion::V2;
        e.hash = e.computed_hash();
        e
    };
    let e1 = v2(entry(1, GENESIS, "event", "events/pump-7", "{}"));
    let body = serde_json::json!({ "note": signer.sign(1, &e1.hash) }).to_string();
    let e2 = v2(entry(
        2,
        e1.hash,
        "log.checkpoint",
        "system/checkpoints",
        &body,
    ));
    let key = SiteKey::new(SITE, signer.public_key());
    let header = |version| Header {
        format: format::FORMAT.into(),
        version,
        site: SITE.into(),
        from: 1,
        to: 1,
        end: 2,
        stream: None,
    };
    let export = |version, first: &EntryLine| {
        let mut out = Vec::new();
        format::write_line(&mut out, &header(version)).unwrap();
        format::write_line(&mut out, first).unwrap();
        format::write_line(&mut out, &EntryLine::opened(&e2)).unwrap();
        String::from_utf8(out).unwrap()
    };
    let opened = EntryLine::opened(&e1);
    let text = export(format::VERSION, &opened);
    assert!(text.contains(",\"chain\":2,\"digest\":\""), "{text}");
    let r = check(&mut text.as_bytes(), &key).unwrap();
    assert_eq!((r.opened, r.checkpoints, r.signed_to), (2, 1, 1));

    let mut withheld = opened.clone();
    withheld.body = None;
    withheld.withheld = Some(format::Withheld::Purged);
    let r = check(&mut export(format::VERSION, &withheld).as_bytes(), &key).unwrap();
    assert_eq!((r.opened, r.withheld, r.purged), (1, 1, vec![[1, 1]]));
    let mut late = withheld.clone();
    late.ts += 1;
    assert_eq!(fails_at(&export(format::VERSION, &late), &key), 2);

    let mut bare = opened.clone();
    (bare.chain, bare.digest) = (None, None);
    assert_eq!(fails_at(&export(format::VERSION, &bare), &key), 2);
    assert_eq!(fails_at(&export(format::VERSION_1, &opened), &key), 2);
}
