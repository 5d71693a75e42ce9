//! The OpenAPI document served at /api/v1/openapi.json lists exactly the routes the router serves,
//! with their security, and every schema it refers to exists.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::TestServer;

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap().to_string());
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_route_table() {
    let server = TestServer::start().await;
    let res = server.client().get("/api/v1/openapi.json").await;
    assert_eq!(res.status, 200);
    let doc = res.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
        }
    }
    let specs = plantwire::http::route_specs();
    let served: BTreeSet<(String, String)> = specs
        .iter()
        .map(|s| (s.method.to_string(), s.path.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "undocumented routes {missing:?}; documented but not served {extra:?}"
    );

    // Private routes say how to authenticate; public ones say nothing is needed.
    for s in &specs {
        let op = &doc["paths"][s.path][s.method.as_str().to_lowercase()];
        let security = op["security"].as_array().unwrap();
        assert_eq!(
            security.is_empty(),
            s.access == plantwire::http::Access::Public,
            "{} {}",
            s.method,
            s.path
        );
    }

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "schema {name} is referenced but missing"
        );
    }
    server.stop().await;
}
