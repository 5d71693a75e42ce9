//! Event attributes through the real server: any finite f64 a device sends comes back bit for
//! bit over the API and sits bit for bit in the log; numbers that cannot be kept are refused.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::support::TestServer;

/// splitmix64: a tiny seeded generator, so a failure replays with the same values.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Finite doubles: the reported one, edge cases, then random bit patterns over every exponent
/// and, because most random patterns are huge or tiny, random values in ordinary ranges too.
fn doubles(n: usize) -> Vec<f64> {
    let mut out = vec![
        0.099_174_353_405_921_29,
        -0.0,
        0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        9_007_199_254_740_993.0,
        1e300,
        0.1,
    ];
    let mut rng = SplitMix(0x5EED_0011_F10A_7000);
    while out.len() < n {
        let bits = rng.next();
        let f = if out.len() % 2 == 0 {
            f64::from_bits(bits)
        } else {
            // uniform in [0, 1) scaled by a power of ten in 1e-6..1e6
            let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
            let scale = 10f64.powi((rng.next() % 13) as i32 - 6);
            if bits & 1 == 0 {
                unit * scale
            } else {
                -unit * scale
            }
        };
        if f.is_finite() {
            out.push(f);
        }
    }
    out
}

/// The attributes of listed events, as JSON text, so the test's own parser cannot hide a change.
#[derive(Deserialize)]
struct Listed {
    events: Vec<ListedEvent>,
}

#[derive(Deserialize)]
struct ListedEvent {
    seq: u64,
    attributes: BTreeMap<String, Box<RawValue>>,
}

fn exact(raw: &RawValue) -> u64 {
    raw.get().parse::<f64>().unwrap().to_bits()
}

#[tokio::test]
async fn any_finite_double_round_trips_bit_exactly_through_the_api_and_the_log() {
    const PER_EVENT: usize = 64;
    let server = TestServer::start().await;
    let token = server.device("meter-1").await;
    server
        .user("reader", plantwire::store::Role::Viewer, PW)
        .await;
    let reader = Api::login(&server.client(), "reader", PW).await;
    let client = server.client();

    let values = doubles(4096);
    let mut sent: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for chunk in values.chunks(PER_EVENT) {
        let attrs: serde_json::Map<String, Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("a{i:02}"), json!(f)))
            .collect();
        let res = client
            .post_json(
                "/api/v1/events",
                Some(&token),
                &json!({"source": "meter-1", "type": "reading", "attributes": attrs}),
            )
            .await;
        assert_eq!(res.status, 201, "{:?}", res.body);
        sent.insert(res.json()["seq"].as_u64().unwrap(), chunk.to_vec());
    }

    // Read back over the API.
    let mut after = 0;
    let mut seen = 0;
    loop {
        let res = reader
            .get(&format!("/api/v1/events?after={after}&limit=500"))
            .await;
        assert_eq!(res.status, 200);
        let page: Listed = serde_json::from_slice(&res.body).unwrap();
        let Some(last) = page.events.last() else {
            break;
        };
        after = last.seq;
        for ev in &page.events {
            let want = &sent[&ev.seq];
            for (i, f) in want.iter().enumerate() {
                let got = exact(&ev.attributes[&format!("a{i:02}")]);
                assert_eq!(
                    got,
                    f.to_bits(),
                    "API: sent {f:?}, got {got:#x} (seq {})",
                    ev.seq
                );
                seen += 1;
            }
        }
    }
    assert_eq!(seen, values.len());

    // The bodies as stored (the bytes that were hashed into the chain), with the server stopped.
    let dir = server.stop().await;
    let config = crate::support::test_config(dir.path());
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    let mut checked = 0;
    store
        .read()
        .unwrap()
        .scan_log(1, |seq, raw| {
            if let Some(want) = sent.get(&seq) {
                let e = plantwire::log::read::decode_entry(&site, &key, seq, raw).unwrap();
                let body: ListedEvent = serde_json::from_slice(&with_seq(&e.body, seq)).unwrap();
                for (i, f) in want.iter().enumerate() {
                    let got = exact(&body.attributes[&format!("a{i:02}")]);
                    assert_eq!(got, f.to_bits(), "log: sent {f:?} (seq {seq})");
                    checked += 1;
                }
            }
            true
        })
        .unwrap();
    assert_eq!(checked, values.len());
    let report = plantwire::log::verify(&store, &site, &key).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
}

/// A stored body has no `seq`; add it so one reader type serves both checks.
fn with_seq(body: &[u8], seq: u64) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v["seq"] = json!(seq);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn numbers_that_cannot_be_kept_exactly_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let token = server.device("meter-2").await;
    let client = server.client();
    let head = server.head_seq();
    // Sent as raw text: a JSON library on the test side would already have changed them.
    let cases = [
        ("9223372036854775808", "number_out_of_range"),
        ("-9223372036854775809", "number_out_of_range"),
        ("18446744073709551616", "number_out_of_range"),
        ("123456789012345678901234567890", "number_out_of_range"),
        ("1e400", "number_out_of_range"),
        ("-1.5e309", "number_out_of_range"),
        ("null", "invalid_event"),
        ("[1]", "invalid_event"),
        ("NaN", "invalid_json"),
    ];
    for (text, code) in cases {
        let body =
            format!(r#"{{"source":"meter-2","type":"reading","attributes":{{"x":{text}}}}}"#);
        let req = client
            .request(hyper::Method::POST, "/api/v1/events")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::from(body))
            .unwrap();
        let res = client.send(req).await;
        assert_eq!(res.status, 400, "{text}: {:?}", res.body);
        assert_eq!(res.error_code(), code, "{text}");
    }
    assert_eq!(server.head_seq(), head, "a refused event was stored");

    // The edges that fit are kept as sent: integers stay integers, exact.
    let body = r#"{"source":"meter-2","type":"reading","attributes":{"max":9223372036854775807,"min":-9223372036854775808,"big":9007199254740993,"f":1e300}}"#;
    let req = client
        .request(hyper::Method::POST, "/api/v1/events/batch")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::from(format!(
            r#"{{"events":[{body}]}}"#
        )))
        .unwrap();
    let res = client.send(req).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    server
        .user("reader", plantwire::store::Role::Viewer, PW)
        .await;
    let reader = Api::login(&server.client(), "reader", PW).await;
    let res = reader.get(&format!("/api/v1/events?after={head}")).await;
    let page: Listed = serde_json::from_slice(&res.body).unwrap();
    let attrs = &page.events[0].attributes;
    assert_eq!(attrs["max"].get(), "9223372036854775807");
    assert_eq!(attrs["min"].get(), "-9223372036854775808");
    assert_eq!(attrs["big"].get(), "9007199254740993");
    assert_eq!(exact(&attrs["f"]), 1e300f64.to_bits());
}
