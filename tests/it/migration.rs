//! A store written by round 1's binary (schema v3, `tests/fixtures/round1`) opens with this build:
//! it migrates, its events are indexed by the backfill, and the chain verifies.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::chat_support::Api;
use crate::support::TestServer;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/round1");
const ADMIN_PW: &str = "round one admin pw 42";

fn copy_fixture(to: &Path) {
    for f in ["plantwire.redb", "data.key"] {
        std::fs::copy(Path::new(FIXTURE).join(f), to.join(f)).unwrap();
        std::fs::set_permissions(to.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[tokio::test]
async fn a_round_one_store_migrates_keeps_its_history_and_verifies() {
    let dir = tempfile::TempDir::new().unwrap();
    copy_fixture(dir.path());
    let server = TestServer::start_in(dir, |c| c.site = Some("round1".into())).await;
    let version = server
        .state()
        .log()
        .read()
        .unwrap()
        .meta("schema_version")
        .unwrap()
        .unwrap();
    assert_eq!(
        u32::from_be_bytes(version.try_into().unwrap()),
        plantwire::store::SCHEMA_VERSION
    );

    let admin = Api::login(&server.client(), "admin", ADMIN_PW).await;
    // The events of round 1, found through the indexes the backfill wrote.
    let events = admin.ok("/api/v1/events?type=pressure.high").await;
    let messages: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["round one 1", "round one 2", "round one 3"]);
    assert_eq!(events["events"][0]["attributes"]["bar"], 7.1);
    // The channel and its message, as round 1 wrote them.
    let channels = admin.ok("/api/v1/channels").await;
    let id = channels["channels"][0]["id"].as_str().unwrap().to_string();
    let history = admin.history(&id, "").await;
    assert_eq!(
        history["messages"][0]["text"],
        "shift handover: pump 7 pressure high"
    );
    assert_eq!(history["messages"][0]["author"], "admin");

    let dir = server.stop().await;
    let mut config = crate::support::test_config(dir.path());
    config.site = Some("round1".into());
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    let report = plantwire::log::verify(&store, &site, &key).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert!(
        report.entries > 11,
        "round 1's 11 entries and this run's sign-in"
    );
}
