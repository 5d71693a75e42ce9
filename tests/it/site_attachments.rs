//! Attachments follow the log to HQ by content hash: an edge server and an HQ server started
//! with their roles, chat with attachments at the edge, downloads at HQ scoped like the entries.

use std::time::Duration;

use plantwire::admin::Request;
use plantwire::config::ReplicationRole;
use plantwire::replication::blobs;
use plantwire::replication::commands::SiteCommand;
use plantwire::replication::grants::GrantRole;
use plantwire::store::Role;
use serde_json::json;

use crate::chat::{png, sha256_hex, upload};
use crate::chat_support::{Api, PW};
use crate::replication::{admin, enrolled};
use crate::support::TestServer;

/// Two messages at the edge carry the same picture (two uploads, one content) and a third a
/// text file; once HQ acknowledges them, the attachments follow: an HQ admin downloads each by
/// the id the site's entry names, byte for byte; both picture ids resolve to one content row; a viewer
/// granted the site (who does not read its chat) gets 404; a blob that does not match its hash
/// is refused and stores nothing; and retention at the edge may purge up to HQ's ack once they
/// followed (`replication::tests` shows it waiting for them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_follow_their_entries_to_hq_once_per_content_and_scoped() {
    let hq = TestServer::start_with(|c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    let edge_dir = enrolled(&hq, "north").await;
    let edge = TestServer::start_in(edge_dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    edge.user("alice", Role::Operator, PW).await;
    let alice = Api::login(&edge.client(), "alice", PW).await;
    let g = alice.group("Shift", &[]).await;
    let picture = png(150 << 10);
    let (mut ids, mut seqs) = (Vec::new(), Vec::new());
    for (key, name, data) in [
        ("a", "gauge.png", picture.clone()),
        ("b", "gauge-again.png", picture.clone()),
        ("c", "notes.txt", b"valve 7 closed\n".to_vec()),
    ] {
        let r = upload(&alice, name, data).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.json()["id"].as_str().unwrap().to_string();
        let sent = alice
            .post(
                &format!("/api/v1/conversations/{g}/messages"),
                json!({"key": key, "text": "", "attachments": [id]}),
            )
            .await;
        assert_eq!(sent.status, 201, "{:?}", sent.body);
        seqs.push(sent.json()["seq"].as_u64().unwrap());
        ids.push(id);
    }
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();
    // The attachments follow within the same session, and then retention at the edge may purge
    // up to HQ's ack (`replication::tests` shows it waiting for them).
    let log = edge.state().log().clone();
    tokio::time::timeout(Duration::from_secs(30), async {
        while plantwire::replication::edge::retention_floor(&log).unwrap() < head {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the attachments follow");
    assert!(blobs::cursor(&log).unwrap() >= seqs[2]);

    hq.user("boss", Role::Admin, PW).await;
    let boss = Api::login(&hq.client(), "boss", PW).await;
    let got = boss
        .get(&format!("/api/v1/sites/north/attachments/{}", ids[0]))
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(sha256_hex(&got.body), sha256_hex(&picture));
    assert_eq!(got.headers["content-type"], "image/png");
    assert!(
        got.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    let again = boss
        .get(&format!("/api/v1/sites/north/attachments/{}", ids[1]))
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(sha256_hex(&again.body), sha256_hex(&picture));
    let text = boss
        .get(&format!("/api/v1/sites/north/attachments/{}", ids[2]))
        .await;
    assert_eq!(text.body.as_ref(), b"valve 7 closed\n");
    assert_eq!(
        boss.get("/api/v1/sites/north/attachments/nope")
            .await
            .error_code(),
        "no_such_attachment"
    );

    // One content per SHA-256 at HQ: the two picture ids share one content row.
    let replica = {
        let h = hq.state().replication().unwrap().hq().unwrap();
        h.hq.replicas.replica("north").await.unwrap()
    };
    let (a, b) = (
        blobs::open(&replica, &ids[0]).unwrap().unwrap(),
        blobs::open(&replica, &ids[1]).unwrap().unwrap(),
    );
    assert_eq!(a.id, b.id, "one content row");
    assert_eq!(a.name, "gauge.png");
    assert_eq!(b.name, "gauge-again.png");

    // A viewer granted the site reads its events, not its chat: no attachment either.
    hq.user("vic", Role::Viewer, PW).await;
    let granted = admin(
        &hq,
        Request::Site {
            site: SiteCommand::Grant {
                site: "north".into(),
                user: "vic".into(),
                role: GrantRole::Viewer,
            },
        },
    )
    .await;
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    let vic = Api::login(&hq.client(), "vic", PW).await;
    let hidden = vic
        .get(&format!("/api/v1/sites/north/attachments/{}", ids[0]))
        .await;
    assert_eq!(
        (hidden.status.as_u16(), hidden.error_code().as_str()),
        (404, "unknown_site")
    );
    // The entries pages say who may download (the UI links files only then).
    let page = |api: &Api| {
        let api = api.clone();
        async move { api.get("/api/v1/sites/north/entries?limit=5").await.json()["attachments"].clone() }
    };
    assert_eq!(page(&boss).await, json!(true));
    assert_eq!(page(&vic).await, json!(false));

    // A blob whose content does not match its SHA-256 changes nothing, and one that no entry
    // at HQ names is refused.
    let forged = blobs::BlobRef {
        seq: seqs[2],
        id: ids[2].clone(),
        sha256: sha256_hex(b"something else"),
        size: 5,
        mime: "text/plain".into(),
        name: "notes.txt".into(),
    };
    let err = blobs::store(&replica, &blobs::blob_body(&forged, b"hello").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("blob_mismatch"));
    let kept = boss
        .get(&format!("/api/v1/sites/north/attachments/{}", ids[2]))
        .await;
    assert_eq!(kept.body.as_ref(), b"valve 7 closed\n");
    let stray = blobs::BlobRef {
        id: "a-stray".into(),
        sha256: sha256_hex(b"hello"),
        ..forged
    };
    let err = blobs::store(&replica, &blobs::blob_body(&stray, b"hello").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("unreferenced_blob"));
    assert!(blobs::open(&replica, "a-stray").unwrap().is_none());
}
