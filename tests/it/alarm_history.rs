//! The alarm history read page by page (`next`, JSON and CSV) and the display of a timed shelve
//! that a new occurrence takes over, through the real server over HTTPS.

use std::collections::BTreeSet;

use serde_json::json;

use crate::chat_support::{Api, people};
use crate::support::TestServer;

async fn csv_page(api: &Api, query: &str) -> (String, Option<u64>) {
    let r = api
        .client
        .send(
            api.client
                .request(
                    hyper::Method::GET,
                    &format!("/api/v1/alarms/history?{query}"),
                )
                .header("authorization", format!("Bearer {}", api.token))
                .header("accept", "text/csv")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    let next = r
        .headers
        .get("x-next-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (String::from_utf8(r.body.to_vec()).unwrap(), next)
}

#[tokio::test]
async fn history_paging_follows_next_to_the_end_and_returns_every_transition_once() {
    let server = TestServer::start().await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    // 3 sources × 6 conditions, each raised, acked and cleared: 54 transitions, 18 per source.
    for source in ["kiln-1", "kiln-2", "kiln-3"] {
        for c in 0..6 {
            let cond = format!("temp.{c}");
            let id = olga
                .post(
                    "/api/v1/alarms",
                    json!({"source": source, "condition": cond, "active": true}),
                )
                .await
                .json()["id"]
                .as_u64()
                .unwrap();
            let ack = olga
                .post(&format!("/api/v1/alarms/{id}/ack"), json!({}))
                .await;
            assert_eq!(ack.status, 200);
            let clear = olga
                .post(
                    "/api/v1/alarms",
                    json!({"source": source, "condition": cond, "active": false}),
                )
                .await;
            assert_eq!(clear.status, 201);
        }
    }

    // Filtered by source, 5 per page: 18 transitions in 4 pages, each once, oldest first.
    let mut seen = Vec::new();
    let mut after = None::<u64>;
    let mut pages = 0;
    loop {
        let q = match after {
            Some(a) => format!("/api/v1/alarms/history?source=kiln-2&limit=5&after={a}"),
            None => "/api/v1/alarms/history?source=kiln-2&limit=5".to_string(),
        };
        let page = olga.ok(&q).await;
        pages += 1;
        for t in page["transitions"].as_array().unwrap() {
            assert_eq!(t["source"], "kiln-2");
            seen.push(t["seq"].as_u64().unwrap());
        }
        match page["next"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen.len(), 18, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(pages, 4);

    // Unfiltered, the CSV pages carry `next` in a header: 54 rows in all, each once.
    let mut rows = BTreeSet::new();
    let mut after = None::<u64>;
    loop {
        let q = match after {
            Some(a) => format!("limit=20&after={a}"),
            None => "limit=20".to_string(),
        };
        let (text, next) = csv_page(olga, &q).await;
        for line in text.lines().skip(1) {
            let seq: u64 = line.split(',').next().unwrap().parse().unwrap();
            assert!(rows.insert(seq), "seq {seq} twice");
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(rows.len(), 54);
}

#[tokio::test]
async fn an_old_occurrence_no_longer_shows_the_timed_shelve_a_new_occurrence_took_over() {
    let server = TestServer::start().await;
    let ops = people(&server, &["olga"], &[]).await;
    let olga = &ops[0];
    let sig = |active: bool| json!({"source": "press-3", "condition": "oil.low", "active": active});
    let first = olga.post("/api/v1/alarms", sig(true)).await.json()["id"]
        .as_u64()
        .unwrap();
    let shelve = olga
        .post(
            &format!("/api/v1/alarms/{first}/shelve"),
            json!({"mode": "timed", "minutes": 60, "reason": "pump swap"}),
        )
        .await;
    assert_eq!(shelve.status, 200, "{:?}", shelve.body);
    assert_eq!(
        olga.post(&format!("/api/v1/alarms/{first}/ack"), json!({}))
            .await
            .status,
        200
    );
    assert_eq!(olga.post("/api/v1/alarms", sig(false)).await.status, 201);
    let second = olga.post("/api/v1/alarms", sig(true)).await.json();
    let second = second["id"].as_u64().unwrap();
    assert_ne!(second, first);

    // The shelve moved to the new occurrence …
    let now = olga.ok(&format!("/api/v1/alarms/{second}")).await;
    assert_eq!(now["shelved"], true);
    assert_eq!(now["previous"], json!(first));
    // … and the old one shows it no more.
    let old = olga.ok(&format!("/api/v1/alarms/{first}")).await;
    assert_eq!(old["shelved"], false, "{old}");
    assert!(old["shelf"].is_null(), "{old}");
    let shelved = olga.ok("/api/v1/alarms?shelved=true").await;
    let ids: Vec<u64> = shelved["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![second]);
}
