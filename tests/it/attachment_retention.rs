//! Attachments under limits and retention: the per-user quota, garbage collection of uploads
//! never posted, and chunks leaving with the last message that references them.

use http_body_util::Full;
use hyper::Method;

use crate::chat_support::{Api, people};
use crate::support::{Resp, TestServer};

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
