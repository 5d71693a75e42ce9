//! Attachments under limits and retention: the per-user quota, garbage collection of uploads
//! never posted, and chunks leaving with the last message that references them.

use std::sync::Arc;

use http_body_util::Full;
use hyper::Method;
use plantwire::clock::ManualClock;
use serde_json::json;

use crate::chat_support::{Api, PW, people};
use crate::support::{Resp, TestServer};

const T0: i64 = 1_800_000_000_000_000;
const HOUR: i64 = 3_600_000_000;

fn png(n: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..n.saturating_sub(8)).map(|i| (i * 17 % 251) as u8));
    v
}

async fn upload(api: &Api, data: Vec<u8>) -> Resp {
    let req = api
        .client
        .request(Method::POST, "/api/v1/attachments?name=g.png")
        .header("authorization", format!("Bearer {}", api.token))
        .body(Full::from(data))
        .unwrap();
    api.client.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_past_the_quota_is_refused_and_stores_nothing() {
    let server = TestServer::start_with(|c| c.attachments.quota_bytes_per_user = 250_000).await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let (alice, bob) = (&p[0], &p[1]);

    for _ in 0..2 {
        let r = upload(alice, png(100_000)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // 200 000 stored: 100 000 more would pass 250 000.
    let r = upload(alice, png(100_000)).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert_eq!(r.error_code(), "quota_exceeded");
    // The refusal counted nothing: exactly what is left still fits, one byte more does not.
    let r = upload(alice, png(50_001)).await;
    assert_eq!(r.error_code(), "quota_exceeded");
    let r = upload(alice, png(50_000)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = upload(alice, png(100)).await;
    assert_eq!(r.error_code(), "quota_exceeded");
    // The quota is per user.
    let r = upload(bob, png(100_000)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

fn id_of(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_never_posted_are_collected_after_the_ttl_and_free_the_quota() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.attachments.quota_bytes_per_user = 250_000;
    })
    .await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let g = p[0].group("Gauges", &["bob"]).await;
    let posted = id_of(&upload(&p[0], png(100_000)).await);
    let r = p[0]
        .post(
            &format!("/api/v1/conversations/{g}/messages"),
            json!({"key": "k", "text": "", "attachments": [posted]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let unposted = id_of(&upload(&p[0], png(100_000)).await);

    // 23 hours on: nothing is old enough yet.
    clock.advance_us(23 * HOUR);
    let client = server.client();
    let alice = Api::login(&client, "alice", PW).await;
    let young = id_of(&upload(&alice, png(50_000)).await);
    let log = server.state().log().clone();
    let gc = plantwire::chat::attachment_gc::collect_unposted;
    assert_eq!(gc(&log, 24).await.unwrap(), 0);
    assert_eq!(
        upload(&alice, png(100)).await.error_code(),
        "quota_exceeded"
    );

    // Past 24 hours for the unposted upload (not for the young one): it goes, and its bytes with it.
    clock.advance_us(2 * HOUR);
    let alice = Api::login(&client, "alice", PW).await;
    let bob = Api::login(&client, "bob", PW).await;
    // (The `attachment-gc` task may run the same collection as the clock moves: the count is
    // theirs or ours; what is left afterwards is not.)
    assert!(gc(&log, 24).await.unwrap() <= 1);
    let got = |api: Api, id: String| async move {
        api.get(&format!("/api/v1/attachments/{id}")).await.status
    };
    assert_eq!(got(alice.clone(), unposted.clone()).await, 404);
    assert_eq!(got(alice.clone(), young.clone()).await, 200);
    assert_eq!(
        got(bob.clone(), posted.clone()).await,
        200,
        "a posted upload stays"
    );
    let r = upload(&alice, png(100_000)).await;
    assert_eq!(r.status, 201, "the quota is freed: {:?}", r.body);
}

const DAY: i64 = 24 * HOUR;

async fn post_with(api: &Api, conv: &str, key: &str, ids: &[&str]) -> u64 {
    let r = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"key": key, "text": "", "attachments": ids}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.json()["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_go_with_the_last_reference_purged_for_good_and_a_restore_finds_them() {
    use plantwire::log::Author;
    use plantwire::retention::{Keep, ScopeRow, stream_scope};

    let clock = Arc::new(ManualClock::new(T0));
    let server = TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.attachments.quota_bytes_per_user = 250_000;
        c.retention.chat = Keep::Days(2);
        c.retention.pause_ms = 0;
    })
    .await;
    let p = people(&server, &["alice", "bob"], &[]).await;
    let free = p[0].group("free", &["bob"]).await;
    let held = p[0].group("held", &["bob"]).await;
    let retention = server.state().retention().clone();
    let by = Author::Cli("auditor".into());
    let hold = ScopeRow {
        keep: None,
        hold: true,
        ..Default::default()
    };
    retention
        .set_scope(&stream_scope(&format!("conv/{held}")), Some(hold), &by)
        .await
        .unwrap();
    let a = id_of(&upload(&p[0], png(100_000)).await);
    let b = id_of(&upload(&p[0], png(100_000)).await);
    let m1 = post_with(&p[0], &free, "m1", &[&a, &b]).await;
    post_with(&p[0], &held, "m2", &[&b]).await;

    let client = server.client();
    let status = |id: String| {
        let client = client.clone();
        async move {
            let alice = Api::login(&client, "alice", PW).await;
            alice.get(&format!("/api/v1/attachments/{id}")).await.status
        }
    };
    // Purged within the grace period: the chunks stay, and a restore finds them.
    clock.advance_us(3 * DAY);
    let report = retention.pass(false, &by).await.unwrap();
    assert!(report.purged.contains(&m1), "{report:?}");
    assert_eq!(status(a.clone()).await, 200);
    let restored = retention.restore(1, u64::MAX, &by).await.unwrap();
    assert!(restored.contains(&m1), "{restored:?}");
    assert_eq!(status(a.clone()).await, 200);

    // Purged again and the grace period over: the last reference to `a` is gone for good, so are
    // its chunks and its bytes; `b` is still referenced by the held message.
    let again = retention.pass(false, &by).await.unwrap();
    assert!(again.purged.contains(&m1), "{again:?}");
    clock.advance_us(8 * DAY);
    assert!(retention.pass(false, &by).await.unwrap().forgotten >= 1);
    assert_eq!(status(a.clone()).await, 404);
    assert_eq!(status(b.clone()).await, 200);
    let alice = Api::login(&client, "alice", PW).await;
    let c = id_of(&upload(&alice, png(150_000)).await);

    // `--now` keeps nothing: the chunks go in the purge itself.
    let m3 = post_with(&alice, &free, "m3", &[&c]).await;
    clock.advance_us(3 * DAY);
    assert!(
        retention
            .pass(true, &by)
            .await
            .unwrap()
            .purged
            .contains(&m3)
    );
    assert_eq!(status(c).await, 404);
    let alice = Api::login(&client, "alice", PW).await;
    let r = upload(&alice, png(150_000)).await;
    assert_eq!(r.status, 201, "the quota is freed: {:?}", r.body);
}
