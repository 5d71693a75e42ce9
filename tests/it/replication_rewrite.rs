//! A rewritten edge history caught at HQ: an edge ships, is stopped, has one stored entry
//! rewritten through redb with the whole chain after it recomputed (so its own chain verifies),
//! and is started again; its next signed checkpoint no longer extends what HQ holds.

use std::time::Duration;

use redb::{ReadableTable, TableDefinition};

use crate::chat_support::{Api, PW};
use crate::hq_tenancy::{shipped, start_hq};
use crate::replication::{enrolled, events, hashes};
use crate::support::{TestServer, test_config};
use plantwire::config::ReplicationRole;
use plantwire::log::entry::{content_digest, hash_v2, seal_aad};
use plantwire::store::{ChainHead, LogRecord, Role};

/// The on-disk tables the rewrite reaches behind the server's back.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_seq_record");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_name_value");

/// What the forger changes in the entry's body.
const GENUINE: &str = "\"n\":2";
const FORGED: &str = "\"n\":9";

/// Rewrites the body of entry `seq` of the stopped store in `dir` (sealed again with the site's
/// data key), then recomputes every hash after it and the stored chain head, as someone with
/// the key file and write access to the state directory could.
fn rewrite(dir: &std::path::Path, site: &str, seq: u64) {
    let (store, key, _) = plantwire::state::open_offline(&edge_config(dir)).unwrap();
    drop(store);
    let db = redb::Database::open(dir.join(plantwire::bootstrap::STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut log = txn.open_table(LOG).unwrap();
        let head = log.last().unwrap().unwrap().0.value();
        let mut prev = None;
        for s in seq..=head {
            let mut rec = LogRecord::decode(log.get(s).unwrap().unwrap().value()).unwrap();
            let digest = rec.digest.expect("a chain-v2 record");
            let digest = if s == seq {
                let aad = seal_aad(site, s);
                let body = String::from_utf8(key.open(&aad, &rec.sealed).unwrap()).unwrap();
                assert!(body.contains(GENUINE), "{body}");
                let body = body.replace(GENUINE, FORGED);
                rec.sealed = key.seal(&aad, body.as_bytes()).unwrap();
                let d = content_digest(&rec.kind, &rec.stream, &rec.author, body.as_bytes());
                rec.digest = Some(d);
                d
            } else {
                digest
            };
            rec.prev = prev.unwrap_or(rec.prev);
            rec.hash = hash_v2(&rec.prev, site, s, rec.ts, &digest);
            prev = Some(rec.hash);
            log.insert(s, rec.encode().unwrap().as_slice()).unwrap();
            if s == head {
                let mut meta = txn.open_table(META).unwrap();
                let old = ChainHead::decode(meta.get("chain_head").unwrap().unwrap().value());
                let new = ChainHead {
                    seq: head,
                    hash: rec.hash,
                    ts: old.unwrap().ts,
                };
                meta.insert("chain_head", new.encode().as_slice()).unwrap();
            }
        }
    }
    txn.commit().unwrap();
}

/// The stopped edge's config, for the offline tools.
fn edge_config(dir: &std::path::Path) -> plantwire::config::Config {
    let mut c = test_config(dir);
    c.site = Some("north".into());
    c
}

/// The edge ships 6 notes and is stopped; the note `{"n":2}` becomes `{"n":9}` in its redb with
/// the chain recomputed, so the edge's own audit finds nothing wrong with the chain. Started
/// again, it logs two more entries and signs a checkpoint over its new head. HQ refuses the
/// batch carrying it (`history_rewritten`): its replica keeps the genuine hashes, `GET
/// /api/v1/sites` flags the site, and HQ's log holds the critical `history.rewritten` system
/// alarm for `site/north`.
#[tokio::test]
async fn an_edge_whose_entry_is_rewritten_in_redb_is_caught_at_hq_by_its_checkpoint() {
    let hq = start_hq().await;
    hq.user("boss", Role::Admin, PW).await;
    let dir = enrolled(&hq, "north").await;
    let edge = TestServer::start_in(dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    let base = edge.head_seq();
    events(&edge, 6).await;
    let head = edge.head_seq();
    shipped(&edge).await;
    let genuine = hashes(&hq.replica("north").await);
    assert_eq!(genuine.len() as u64, head);
    let dir = edge.stop().await;

    // The note {"n":2} is entry base + 3.
    rewrite(dir.path(), "north", base + 3);
    let (store, key, site) = plantwire::state::open_offline(&edge_config(dir.path())).unwrap();
    let report = plantwire::log::verify(&store, &site, &key).unwrap();
    assert_eq!(report.problem, None, "the rewritten chain is consistent");
    assert_eq!(report.last_seq, Some(head));
    drop(store);

    let edge = TestServer::start_in(dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
        c.storage.checkpoint_every = 2;
    })
    .await;
    assert_ne!(hashes(edge.state().log())[..head as usize], genuine[..]);
    events(&edge, 2).await;

    let api = Api::login(&hq.client(), "boss", PW).await;
    let mut sites = serde_json::Value::Null;
    for _ in 0..600 {
        let res = api.call(hyper::Method::GET, "/api/v1/sites", None).await;
        assert_eq!(res.status, 200);
        sites = res.json();
        if sites["sites"][0]["history_rewritten"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sites["sites"][0]["site"], "north", "{sites}");
    assert_eq!(sites["sites"][0]["history_rewritten"], true, "{sites}");
    // Nothing of the rewritten history was taken.
    assert_eq!(hashes(&hq.replica("north").await), genuine);
    assert_eq!(sites["sites"][0]["seq"], head, "{sites}");

    let log = hq.state().log();
    let rtx = log.read().unwrap();
    let id = rtx
        .alarm_current("site/north", "history.rewritten")
        .unwrap()
        .expect("the system alarm is raised at HQ");
    let alarm = rtx.alarm(id).unwrap().unwrap();
    assert!(alarm.input_active);
    assert_eq!(
        alarm.priority,
        plantwire::store::Priority::Critical,
        "{alarm:?}"
    );
    drop(rtx);
    edge.stop().await;
}
