//! HQ tenancy over real TLS: an HQ with two enrolled edges (`alpha`, `bravo`) that replicated
//! real entries, an HQ user granted only `alpha`, an auditor and an admin. The route matrix walks
//! every route of the route table as the alpha-only user with bravo's name in every path
//! parameter and asserts that nothing of bravo comes back; the auditor reads both sites and every
//! write route refuses it.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::replication::{admin, enrolled};
use crate::support::TestServer;
use plantwire::admin::Request;
use plantwire::config::ReplicationRole;
use plantwire::log::{Author, NewEntry};
use plantwire::replication::commands::SiteCommand;
use plantwire::replication::grants::GrantRole;
use plantwire::store::Role;

const ALPHA_MARK: &str = "alpha-marker-5c1e9d";
const BRAVO_MARK: &str = "bravo-marker-8f3a2b";
/// The text of a direct message at alpha: no viewer grant reads it.
const ALPHA_CHAT: &str = "alpha-dm-text-71d04e";

pub(crate) async fn start_hq() -> TestServer {
    TestServer::start_with(|c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await
}

/// Enrols `site` at `hq`, starts its edge, writes a note and raises a critical alarm carrying
/// `mark`, and waits until HQ acknowledged the whole log.
pub(crate) async fn edge(hq: &TestServer, site: &str, mark: &str) -> TestServer {
    let dir = enrolled(hq, site).await;
    let edge = TestServer::start_in(dir, |c| {
        c.site = Some(site.into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    let log = edge.state().log();
    let note = NewEntry::json(
        "test.note",
        "test/notes",
        &Author::System,
        &json!({ "text": mark }),
    )
    .unwrap();
    log.submit(move |tx| tx.append(note.clone())).await.unwrap();
    plantwire::alarms::raise(
        log,
        &Author::System,
        serde_json::from_value(json!({
            "source": format!("{mark}-pump"),
            "condition": "pressure.high",
            "active": true,
            "priority": "critical",
            "message": format!("pressure high at {mark}"),
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();
    edge
}

/// Waits until HQ acknowledged the whole log of `edge`.
pub(crate) async fn shipped(edge: &TestServer) {
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();
}

async fn site_cmd(hq: &TestServer, cmd: SiteCommand) -> plantwire::admin::Outcome {
    admin(hq, Request::Site { site: cmd }).await
}

/// A route's path with every parameter filled: `{site}` and the other names with bravo's name
/// (a topic, a device), ids and seqs with small numbers that exist at HQ.
fn fill(path: &str, site: &str) -> String {
    let mut p = path
        .replace("{site}", site)
        .replace("{topic}", site)
        .replace("{name}", site)
        .replace("{username}", site)
        .replace("{user}", site)
        .replace("{id}", "1")
        .replace("{seq}", "1")
        .replace("{sequence_id}", "1")
        .replace("{emoji}", "x");
    // The ntfy subscriptions stream until the server stops, unless they poll.
    if p.ends_with("/json") || p.ends_with("/sse") {
        p.push_str("?poll=1");
    }
    p
}

/// What a route answers, its body bounded in time (no route may stream forever here).
async fn call(api: &Api, method: &Method, path: &str) -> crate::support::Resp {
    let body = (method != Method::GET).then(|| json!({}));
    tokio::time::timeout(
        Duration::from_secs(20),
        api.call(method.clone(), path, body),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path} did not answer"))
}

/// The account routes an auditor may write to (its own sign-out, password and sessions).
fn own_account(method: &Method, path: &str) -> bool {
    (*method == Method::POST && matches!(path, "/api/v1/auth/logout" | "/api/v1/auth/password"))
        || (*method == Method::DELETE && path == "/api/v1/auth/sessions/{id}")
}

#[tokio::test]
async fn a_user_granted_one_site_sees_nothing_of_another_and_the_auditor_reads_all_and_writes_nothing()
 {
    let hq = start_hq().await;
    let alpha = edge(&hq, "alpha", ALPHA_MARK).await;
    let bravo = edge(&hq, "bravo", BRAVO_MARK).await;
    // A direct message at alpha: chat is not a site-wide kind.
    alpha.user("oscar", Role::Operator, PW).await;
    alpha.user("olga", Role::Operator, PW).await;
    let oscar = Api::login(&alpha.client(), "oscar", PW).await;
    let dm = oscar.direct("olga").await;
    oscar.say(&dm, "c1", ALPHA_CHAT).await;
    shipped(&alpha).await;
    hq.user("alice", Role::Viewer, PW).await;
    hq.user("audrey", Role::Auditor, PW).await;
    hq.user("boss", Role::Admin, PW).await;

    // Grants: an enrolled site and an HQ user only; each one an entry of HQ's log.
    let g = site_cmd(
        &hq,
        SiteCommand::Grant {
            site: "alpha".into(),
            user: "alice".into(),
            role: GrantRole::Viewer,
        },
    )
    .await;
    assert_eq!(g.code, 0, "{}", g.stderr);
    for (site, user) in [("charlie", "alice"), ("alpha", "nobody")] {
        let refused = site_cmd(
            &hq,
            SiteCommand::Grant {
                site: site.into(),
                user: user.into(),
                role: GrantRole::Viewer,
            },
        )
        .await;
        assert_ne!(refused.code, 0, "{site} {user}: {}", refused.stdout);
    }
    let grants = site_cmd(
        &hq,
        SiteCommand::Grants {
            site: None,
            json: true,
        },
    )
    .await;
    let v: Value = serde_json::from_str(&grants.stdout).unwrap();
    assert_eq!(
        v,
        json!([{ "site": "alpha", "user": "alice", "role": "viewer",
                 "granted_at_us": v[0]["granted_at_us"], "granted_by": v[0]["granted_by"] }])
    );
    let hq_log = hq.state().log();
    let rtx = hq_log.read().unwrap();
    let granted = (1..=hq_log.head(&rtx).unwrap())
        .filter_map(|s| hq_log.entry(&rtx, s).unwrap())
        .filter(|e| e.kind == "site.granted")
        .count();
    assert_eq!(granted, 1, "the grant is an entry of HQ's log");
    drop(rtx);

    // The offline path (no running replication runtime: replicas opened for the command) lists
    // the same grants.
    let st = hq.state();
    let offline = plantwire::admin::execute(
        &plantwire::admin::Ctx {
            log: st.log(),
            auth: st.auth(),
            config: st.config(),
            state_dir: st.state_dir(),
            by: crate::support::test_author(),
            online: false,
            ingest: None,
            replication: None,
        },
        &Request::Site {
            site: SiteCommand::Grants {
                site: Some("alpha".into()),
                json: false,
            },
        },
    )
    .await;
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    assert!(
        offline
            .stdout
            .lines()
            .any(|l| l.starts_with("alpha") && l.contains("alice") && l.contains("viewer")),
        "{}",
        offline.stdout
    );

    let alice = Api::login(&hq.client(), "alice", PW).await;
    // What alice may see: alpha, whole.
    let sites = alice.get("/api/v1/sites").await;
    assert_eq!(sites.status, 200);
    assert_eq!(sites.json()["sites"].as_array().unwrap().len(), 1);
    assert_eq!(sites.json()["sites"][0]["site"], "alpha");
    let own = alice.get("/api/v1/sites/alpha/entries?limit=500").await;
    assert_eq!(own.status, 200, "{:?}", own.body);
    assert!(String::from_utf8_lossy(&own.body).contains(ALPHA_MARK));
    // A viewer grant reads the site-wide kinds only: the direct message, its members, the user
    // and session entries come withheld (kind and hash, nothing else).
    let own_text = String::from_utf8_lossy(&own.body);
    assert!(!own_text.contains(ALPHA_CHAT), "{own_text}");
    assert!(!own_text.contains("oscar"), "{own_text}");
    let chat = alice
        .get("/api/v1/sites/alpha/entries?kind=chat.message")
        .await
        .json();
    let m = &chat["entries"][0];
    assert_eq!(
        (
            m["withheld"].as_bool(),
            m["stream"].as_str(),
            m["author"].as_str()
        ),
        (Some(true), Some(""), Some("")),
        "{m}"
    );
    assert!(m["body"].is_null(), "{m}");
    let alarms = alice
        .get("/api/v1/sites/alpha/entries?kind=alarm.")
        .await
        .json();
    assert_eq!(alarms["entries"][0]["withheld"], false);
    let overview = alice.get("/api/v1/sites/overview").await;
    assert_eq!(overview.json()["sites"][0]["unacked"]["critical"], 1);

    // The matrix: every route, bravo's name in every parameter, nothing of bravo comes back.
    let unknown = alice.get("/api/v1/sites/nowhere/entries").await;
    let mut specs = plantwire::http::route_specs();
    // Signing out ends alice's session: last.
    specs.sort_by_key(|s| s.path == "/api/v1/auth/logout");
    let mut walked = 0;
    for spec in &specs {
        let path = fill(spec.path, "bravo");
        let res = call(&alice, &spec.method, &path).await;
        walked += 1;
        let body = String::from_utf8_lossy(&res.body);
        assert!(
            !body.contains(BRAVO_MARK),
            "{} {path} leaks bravo: {body}",
            spec.method
        );
        // Not even its name (beyond the path it was asked for, which an answer may echo).
        assert!(
            !body.replace(&path, "").contains("bravo"),
            "{} {path} names bravo: {body}",
            spec.method
        );
        if spec.path.contains("{site}") {
            // Not granted answers exactly as not existing.
            assert_eq!(res.status, 404, "{} {path}", spec.method);
            assert_eq!(res.json()["code"], unknown.json()["code"]);
            assert_eq!(res.json()["error"], unknown.json()["error"]);
        }
        // And with every query a site route takes.
        if spec.path.contains("{site}") {
            for q in [
                "?since=0",
                "?before=100&kind=alarm.",
                "?kind=test.note&limit=500",
            ] {
                let res = call(&alice, &spec.method, &format!("{path}{q}")).await;
                assert_eq!(res.status, 404, "{path}{q}");
                assert!(!String::from_utf8_lossy(&res.body).contains(BRAVO_MARK));
            }
        }
    }
    assert_eq!(walked, specs.len());
    assert!(specs.iter().any(|s| s.path.contains("{site}")));

    // A grant taken back counts at once.
    let alice = Api::login(&hq.client(), "alice", PW).await;
    let u = site_cmd(
        &hq,
        SiteCommand::Ungrant {
            site: "alpha".into(),
            user: "alice".into(),
        },
    )
    .await;
    assert_eq!(u.code, 0, "{}", u.stderr);
    assert_eq!(alice.get("/api/v1/sites/alpha/entries").await.status, 404);
    assert_eq!(alice.get("/api/v1/sites").await.json()["sites"], json!([]));

    // The auditor reads every site.
    let audrey = Api::login(&hq.client(), "audrey", PW).await;
    for (site, mark) in [("alpha", ALPHA_MARK), ("bravo", BRAVO_MARK)] {
        let page = audrey
            .get(&format!("/api/v1/sites/{site}/entries?kind=test.note"))
            .await;
        assert_eq!(page.status, 200, "{site}: {:?}", page.body);
        assert_eq!(page.json()["entries"][0]["body"]["text"], mark);
    }
    // Whole, chat included: the auditor is the audit role.
    let chat = audrey
        .get("/api/v1/sites/alpha/entries?kind=chat.message")
        .await
        .json();
    assert!(chat.to_string().contains(ALPHA_CHAT), "{chat}");
    assert_eq!(chat["entries"][0]["withheld"], false);
    let all = audrey.get("/api/v1/sites/overview").await.json();
    let names: Vec<&str> = all["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "bravo"]);
    for s in all["sites"].as_array().unwrap() {
        assert_eq!(s["unacked"]["critical"], 1, "{s}");
        assert_eq!(s["connected"], true, "{s}");
    }
    // And every write route refuses it, before anything is changed.
    let mut writes = 0;
    // (The public routes take no credential, so no role applies to them.)
    for spec in specs
        .iter()
        .filter(|s| s.method != Method::GET && s.access != plantwire::http::Access::Public)
    {
        if own_account(&spec.method, spec.path) {
            continue;
        }
        let path = fill(spec.path, "alpha");
        let res = call(&audrey, &spec.method, &path).await;
        writes += 1;
        match spec.access {
            plantwire::http::Access::User => {
                assert_eq!(res.status, 403, "{} {path}: {:?}", spec.method, res.body);
                assert_eq!(
                    res.json()["code"],
                    "read_only_role",
                    "{} {path}",
                    spec.method
                );
            }
            // Device routes take device credentials only; a person's token is not one.
            _ => assert!(
                res.status == 401 || res.status == 403,
                "{} {path}: {}",
                spec.method,
                res.status
            ),
        }
    }
    assert!(writes > 40, "{writes} write routes");
    // The auditor still signs out.
    assert_eq!(
        call(&audrey, &Method::POST, "/api/v1/auth/logout")
            .await
            .status,
        204
    );

    alpha.stop().await;
    bravo.stop().await;
    hq.stop().await;
}
