//! Replication over the network: two real servers in one test (an edge site `north` and an HQ),
//! HQ's replication listener over real TLS with client certificates, enrolment by code, the
//! shipper following the edge's log, and revocation.

use std::sync::Arc;
use std::time::Duration;

use plantwire::clock::SystemClock;
use plantwire::log::checkpointer::checkpoint_now;
use plantwire::log::{Author, NewEntry};
use plantwire::metrics::Metrics;
use plantwire::replication::net::{self, Hq, NetError};
use plantwire::replication::ship::{self, ShipOptions};
use plantwire::replication::sites::Sites;
use plantwire::replication::{Replicas, ReplicasConfig, ReplicationError};
use plantwire::store::DataKey;
use plantwire::tls::issue::DeviceCa;
use tokio_util::sync::CancellationToken;

use crate::support::TestServer;

pub(crate) struct HqSide {
    pub(crate) replicas: Arc<Replicas>,
    pub(crate) sites: Arc<Sites>,
    pub(crate) addr: String,
    pub(crate) ca_sha256: String,
    pub(crate) stop: CancellationToken,
}

/// HQ's replication listener on a loopback port, beside the HQ test server.
pub(crate) async fn start_hq(hq: &TestServer) -> HqSide {
    let st = hq.state();
    let ca = Arc::new(DeviceCa::load(st.config(), st.state_dir(), "hq").unwrap());
    let root = st.state_dir().join("sites");
    let sites = Arc::new(Sites::load(&root).unwrap());
    let replicas = Arc::new(Replicas::new(ReplicasConfig {
        root,
        key: Arc::new(|| Ok(DataKey::from_bytes(&[9u8; 32]).unwrap())),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new()),
        log: plantwire::state::log_options(st.config()),
        max_open: 4,
        witness: st.signer().clone(),
        accept_stubs: false,
        alarms: Some(st.log().clone()),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = net::server_config(st.tls(), &ca).unwrap();
    let stop = CancellationToken::new();
    let ca_sha256 = net::sha256_hex(ca.cert_der().as_ref());
    tokio::spawn(net::serve(
        listener,
        config,
        Arc::new(Hq {
            replicas: replicas.clone(),
            sites: sites.clone(),
            ca,
            cert_days: 30,
            clock: Arc::new(SystemClock),
        }),
        stop.clone(),
    ));
    HqSide {
        replicas,
        sites,
        addr,
        ca_sha256,
        stop,
    }
}

pub(crate) fn refused_code(e: &ReplicationError) -> Option<&str> {
    match e {
        ReplicationError::Net(NetError::Refused { code, .. }) => Some(code),
        _ => None,
    }
}

pub(crate) async fn events(server: &TestServer, n: u64) {
    for i in 0..n {
        let e = NewEntry::json(
            "test.note",
            "test/notes",
            &Author::System,
            &serde_json::json!({ "n": i }),
        )
        .unwrap();
        server
            .state()
            .log()
            .submit(move |tx| tx.append(e.clone()))
            .await
            .unwrap();
    }
}

pub(crate) fn hashes(log: &plantwire::log::Log) -> Vec<(u64, [u8; 32])> {
    let rtx = log.read().unwrap();
    let head = log.head(&rtx).unwrap();
    (1..=head)
        .map(|s| (s, log.entry(&rtx, s).unwrap().unwrap().hash))
        .collect()
}

/// `site add` gives a one-time code; the edge enrols with it over TLS pinned to HQ's CA (the
/// code works once, and a code for another site is refused); the shipper follows the edge's log
/// until HQ's replica has the same seqs and hashes, verifies, and holds a witnessed checkpoint.
/// `site revoke` closes the live connection at once and the site's certificate is refused.
#[tokio::test]
async fn a_site_enrols_replicates_and_is_cut_off_when_revoked() {
    let hq = TestServer::start_with(|c| c.site = Some("hq".into())).await;
    let edge = TestServer::start_with(|c| c.site = Some("north".into())).await;
    let side = start_hq(&hq).await;
    let now = hq.state().log().now_us();
    let code = side
        .sites
        .add("north", &side.addr, &side.ca_sha256, now)
        .unwrap()
        .encode()
        .unwrap();
    let dir = edge.state().state_dir().to_path_buf();
    let err = ship::enroll(&code, "south", &dir).await.unwrap_err();
    assert_eq!(err.rejection().map(|r| r.code), Some("wrong_site"));
    ship::enroll(&code, "north", &dir).await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let again = ship::enroll(&code, "north", other.path())
        .await
        .unwrap_err();
    assert_eq!(refused_code(&again), Some("bad_token"), "{again}");
    {
        use std::os::unix::fs::PermissionsExt;
        let key = ship::identity_dir(&dir).join("site.key");
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    events(&edge, 50).await;
    checkpoint_now(edge.state().log(), edge.state().signer())
        .await
        .unwrap();
    events(&edge, 5).await;
    let stop = CancellationToken::new();
    let opts = ShipOptions {
        batch_entries: 16,
        batch_bytes: 1 << 20,
        bandwidth: 0,
        ship: plantwire::replication::edge::ShipClasses::ALL,
        adaptive: false,
    };
    let (task, mut watch) =
        ship::spawn(edge.state().log().clone(), dir.clone(), opts, stop.clone()).unwrap();
    let head = edge.head_seq();
    tokio::time::timeout(
        Duration::from_secs(60),
        watch.acked.wait_for(|&a| a >= head),
    )
    .await
    .expect("the edge's log reaches HQ")
    .unwrap();
    let replica = side.replicas.replica("north").await.unwrap();
    assert_eq!(hashes(&replica), hashes(edge.state().log()));
    assert!(replica.verify().unwrap().ok());
    let status = side.replicas.status("north").await.unwrap();
    assert_eq!((status.seq, status.lag_entries), (head, 0));
    assert!(status.checkpoint.is_some(), "{status:?}");
    assert!(!status.history_rewritten);

    // Revocation: the live connection closes and the certificate no longer ships anything.
    assert!(*watch.connected.borrow());
    assert!(side.sites.revoke("north").unwrap());
    tokio::time::timeout(Duration::from_secs(10), watch.connected.wait_for(|c| !c))
        .await
        .expect("the revoked site's connection closes")
        .unwrap();
    let err = ship::probe(edge.state().log(), &dir).await.unwrap_err();
    assert_eq!(refused_code(&err), Some("unknown_certificate"), "{err}");

    stop.cancel();
    let _ = task.await;
    side.stop.cancel();
    side.replicas.close_all().await;
}

/// A client certificate of the same CA that belongs to no site (a device's) gets nothing.
#[tokio::test]
async fn a_device_certificate_is_not_a_site() {
    let hq = TestServer::start_with(|c| c.site = Some("hq".into())).await;
    let side = start_hq(&hq).await;
    let st = hq.state();
    let ca = DeviceCa::load(st.config(), st.state_dir(), "hq").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (issued, bundle) = ca.issue_with_key("north", now, 1).unwrap();
    let key = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes()).unwrap()
    };
    let config = net::client_config(&side.ca_sha256, Some((vec![issued.cert_der], key))).unwrap();
    let mut conn = net::Conn::open(&side.addr, config).await.unwrap();
    let err = conn
        .post(net::PATH_BATCH, b"PWR".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::Refused { status: 403, code, .. } if code == "unknown_certificate"),
        "{err}"
    );
    side.stop.cancel();
}

/// `audit verify --site SITE --json` at `hq`, which must pass: the report, and the seqs of the
/// ranges it lists under `key` (`purged`, `stubbed`), each range `[first, last]` expanded.
pub(crate) async fn verify_site(
    hq: &TestServer,
    site: &str,
    key: &str,
) -> (serde_json::Value, Vec<u64>) {
    let verified = admin(
        hq,
        plantwire::admin::Request::SiteVerify {
            site: site.into(),
            json: true,
        },
    )
    .await;
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    let report: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    let seqs = report[key]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r[0].as_u64().unwrap()..=r[1].as_u64().unwrap())
        .collect();
    (report, seqs)
}

pub(crate) async fn admin(
    server: &TestServer,
    request: plantwire::admin::Request,
) -> plantwire::admin::Outcome {
    let st = server.state();
    let ctx = plantwire::admin::Ctx {
        log: st.log(),
        auth: st.auth(),
        config: st.config(),
        state_dir: st.state_dir(),
        by: crate::support::test_author(),
        online: true,
        ingest: Some(st.ingest()),
        replication: st.replication(),
    };
    plantwire::admin::execute(&ctx, &request).await
}

/// Adds `site` at `hq` (`site add`, as the control socket runs it) and enrols a fresh state
/// directory with the code it printed on its last line: start the edge in it.
pub(crate) async fn enrolled(hq: &TestServer, site: &str) -> tempfile::TempDir {
    use plantwire::admin::Request;
    use plantwire::replication::commands::SiteCommand;
    let added = admin(
        hq,
        Request::Site {
            site: SiteCommand::Add { name: site.into() },
        },
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let code = added.stdout.lines().last().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    ship::enroll(&code, site, dir.path()).await.unwrap();
    dir
}

/// The wiring of `[replication]`: an HQ server and an edge server started with their roles, the
/// commands as the control socket runs them: `site add` prints the code on its last line, the
/// edge enrols before its first start and its server ships on its own; `site list --json`,
/// `audit verify --site` and `replication status --json` report it; `site revoke` disconnects.
#[tokio::test]
async fn the_servers_replicate_by_role_and_the_commands_report_it() {
    use crate::chat_support::{Api, PW};
    use plantwire::admin::Request;
    use plantwire::config::ReplicationRole;
    use plantwire::replication::commands::SiteCommand;
    use plantwire::store::Role;
    let hq = TestServer::start_with(|c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    let edge_dir = enrolled(&hq, "north").await;
    let again = admin(
        &hq,
        Request::Site {
            site: SiteCommand::Add {
                name: "Bad/Name".into(),
            },
        },
    )
    .await;
    assert_ne!(again.code, 0);

    let edge = TestServer::start_in(edge_dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    edge.user("boss", Role::Admin, PW).await;
    let at_edge = Api::login(&edge.client(), "boss", PW).await;
    let none = at_edge
        .call(hyper::Method::GET, "/api/v1/sites", None)
        .await;
    assert_eq!(none.status, 404);
    events(&edge, 20).await;
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge server ships to HQ")
        .unwrap();

    // Lag as metrics at both ends.
    let edge_metrics = edge.state().metrics().render(0, 0).unwrap();
    assert!(
        edge_metrics.contains("plantwire_replication_lag_entries{site=\"north\"} 0"),
        "{edge_metrics}"
    );
    let hq_metrics = hq.state().metrics().render(0, 0).unwrap();
    assert!(
        hq_metrics.contains("plantwire_replication_lag_entries{site=\"north\"} 0"),
        "{hq_metrics}"
    );
    let list = admin(
        &hq,
        Request::Site {
            site: SiteCommand::List { json: true },
        },
    )
    .await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v[0]["site"], "north");
    assert_eq!(v[0]["seq"], head);
    assert_eq!(v[0]["history_rewritten"], false);
    verify_site(&hq, "north", "purged").await;
    let missing = admin(
        &hq,
        Request::SiteVerify {
            site: "south".into(),
            json: false,
        },
    )
    .await;
    assert_ne!(missing.code, 0);
    // The same list over HTTPS, for admins (and auditors: every site; others: their grants,
    // `hq_tenancy`), and only at an HQ.
    hq.user("boss", Role::Admin, PW).await;
    hq.user("oper", Role::Operator, PW).await;
    let boss = Api::login(&hq.client(), "boss", PW).await;
    let sites = boss.call(hyper::Method::GET, "/api/v1/sites", None).await;
    assert_eq!(sites.status, 200, "{:?}", sites.body);
    assert_eq!(sites.json()["sites"][0]["seq"], head);
    let op = Api::login(&hq.client(), "oper", PW).await;
    let ungranted = op.call(hyper::Method::GET, "/api/v1/sites", None).await;
    assert_eq!(ungranted.status, 200);
    assert_eq!(ungranted.json()["sites"], serde_json::json!([]));

    let status = admin(&edge, Request::ReplicationStatus { json: true }).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let s: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        (s["cursor"].as_u64(), s["lag_entries"].as_u64()),
        (Some(head), Some(0))
    );
    assert_eq!(s["enrolled"], true);

    let mut connected = rt.edge().unwrap().connected.subscribe();
    assert!(
        *connected.borrow(),
        "the edge is connected before the revocation"
    );
    let revoked = admin(
        &hq,
        Request::Site {
            site: SiteCommand::Revoke {
                name: "north".into(),
            },
        },
    )
    .await;
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    tokio::time::timeout(Duration::from_secs(10), connected.wait_for(|c| !c))
        .await
        .expect("revocation disconnects the edge")
        .unwrap();
    // HQ refuses a site command on an edge, and the reverse.
    let wrong = admin(
        &edge,
        Request::Site {
            site: SiteCommand::List { json: false },
        },
    )
    .await;
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("not an HQ"), "{}", wrong.stderr);
}

/// Whether `server`'s system alarm `replication.lag.<site>` exists and is active (source
/// `plantwire` about the server's own site, `site/<site>` about another).
fn lag_alarm(server: &TestServer, site: &str) -> Option<bool> {
    let log = server.state().log();
    let source = if &**log.site() == site {
        "plantwire".to_string()
    } else {
        format!("site/{site}")
    };
    let rtx = log.read().unwrap();
    let id = rtx
        .alarm_current(&source, &format!("replication.lag.{site}"))
        .unwrap()?;
    Some(rtx.alarm(id).unwrap().unwrap().input_active)
}

/// Waits (a few seconds at most) until the lag alarm of `site` at `server` is `want`.
async fn lag_alarm_becomes(server: &TestServer, site: &str, want: Option<bool>) {
    for _ in 0..200 {
        if lag_alarm(server, site) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the lag alarm of {site} is {:?}, not {want:?}",
        lag_alarm(server, site)
    );
}

/// The lag alarm by the test clocks: quiet while replication keeps up; at HQ raised when a site
/// is silent longer than `alarms.replication_lag_secs` and cleared when it is heard from again;
/// at the edge raised when the oldest entry HQ has not acknowledged is older than that.
#[tokio::test]
async fn replication_lag_raises_system_alarms_at_hq_and_at_the_edge_by_the_clock() {
    use plantwire::clock::ManualClock;
    use plantwire::config::{ReplicationRole, SystemAlarm};
    const MINUTE: i64 = 60_000_000;
    // Certificates are checked against the real time, so the test clocks start at it.
    let t0 = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let hq_clock = Arc::new(ManualClock::new(t0));
    let hq = TestServer::start_full(tempfile::tempdir().unwrap(), hq_clock.clone(), |c| {
        c.site = Some("hq".into());
        c.replication.role = ReplicationRole::Hq;
        c.replication.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.alarms.system_alarms = vec![SystemAlarm::ReplicationLag];
    })
    .await;
    let edge_dir = enrolled(&hq, "north").await;
    let edge_clock = Arc::new(ManualClock::new(t0));
    let edge = TestServer::start_full(edge_dir, edge_clock.clone(), |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
        c.alarms.system_alarms = vec![SystemAlarm::ReplicationLag];
    })
    .await;
    let shipped = |edge: &TestServer| {
        let rt = edge.state().replication().unwrap().clone();
        let head = edge.head_seq();
        async move {
            let mut acked = rt.edge().unwrap().acked.subscribe();
            tokio::time::timeout(Duration::from_secs(30), acked.wait_for(|&a| a >= head))
                .await
                .expect("the edge ships to HQ")
                .unwrap();
        }
    };
    events(&edge, 5).await;
    shipped(&edge).await;

    // Five minutes on at both ends: replication keeps up, no alarm anywhere.
    hq_clock.advance_us(5 * MINUTE);
    edge_clock.advance_us(5 * MINUTE);
    let hq_head = hq.head_seq();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lag_alarm(&hq, "north"), None);
    assert_eq!(lag_alarm(&edge, "north"), None);
    assert_eq!(hq.head_seq(), hq_head, "a quiet check writes nothing");

    // HQ hears nothing from north for 11 minutes of its clock: raised there.
    hq_clock.advance_us(6 * MINUTE);
    lag_alarm_becomes(&hq, "north", Some(true)).await;
    // North ships again: heard from, cleared at the next check.
    events(&edge, 1).await;
    shipped(&edge).await;
    hq_clock.advance_us(MINUTE);
    lag_alarm_becomes(&hq, "north", Some(false)).await;

    // HQ goes away; the edge's unacknowledged entry ages past the limit by its clock.
    hq.stop().await;
    events(&edge, 1).await;
    edge_clock.advance_us(11 * MINUTE);
    lag_alarm_becomes(&edge, "north", Some(true)).await;
}

/// Retention on an edge purges nothing HQ has not acknowledged: entries shipped and acknowledged
/// go when due, entries logged after the shipper stopped stay, however old.
#[tokio::test]
async fn retention_on_an_edge_never_purges_what_hq_has_not_acknowledged() {
    use plantwire::clock::{Clock, ManualClock};
    use plantwire::retention::Keep;
    let hq = TestServer::start_with(|c| c.site = Some("hq".into())).await;
    let clock = Arc::new(ManualClock::new(SystemClock.now_us()));
    let edge = TestServer::start_full(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.site = Some("north".into())
    })
    .await;
    let side = start_hq(&hq).await;
    let code = side
        .sites
        .add(
            "north",
            &side.addr,
            &side.ca_sha256,
            hq.state().log().now_us(),
        )
        .unwrap()
        .encode()
        .unwrap();
    let dir = edge.state().state_dir().to_path_buf();
    ship::enroll(&code, "north", &dir).await.unwrap();
    events(&edge, 10).await;
    let stop = CancellationToken::new();
    let opts = ShipOptions {
        batch_entries: 16,
        batch_bytes: 1 << 20,
        bandwidth: 0,
        ship: plantwire::replication::edge::ShipClasses::ALL,
        adaptive: false,
    };
    let (task, mut watch) =
        ship::spawn(edge.state().log().clone(), dir.clone(), opts, stop.clone()).unwrap();
    let shipped = edge.head_seq();
    tokio::time::timeout(
        Duration::from_secs(60),
        watch.acked.wait_for(|&a| a >= shipped),
    )
    .await
    .expect("the edge's log reaches HQ")
    .unwrap();
    stop.cancel();
    let _ = task.await;
    // Logged after the shipper stopped: HQ never acknowledged these.
    events(&edge, 5).await;
    let head = edge.head_seq();
    let acked = plantwire::replication::edge::acked(edge.state().log()).unwrap();
    assert!(acked >= shipped && acked < head, "{acked} {shipped} {head}");

    clock.advance_us(2 * 86_400_000_000);
    let mut config = edge.state().config().clone();
    config.replication.role = plantwire::config::ReplicationRole::Edge;
    config.retention.admin = Keep::Days(1);
    config.retention.pause_ms = 0;
    let retention = plantwire::state::retention(
        &config,
        edge.state().log(),
        Some(edge.state().signer().clone()),
    );
    let report = retention.pass(false, &Author::System).await.unwrap();
    assert_eq!(report.floor, acked);
    assert!(!report.purged.is_empty(), "{report:?}");
    assert!(
        report.purged.iter().all(|&s| s <= acked),
        "{report:?} above {acked}"
    );
    let log = edge.state().log();
    let rtx = log.read().unwrap();
    for seq in acked + 1..=head {
        assert!(log.entry(&rtx, seq).unwrap().is_some(), "entry {seq} kept");
    }
    side.stop.cancel();
    side.replicas.close_all().await;
}
