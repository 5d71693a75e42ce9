//! A site's identity at HQ after enrolment: the checkpoint-signing key HQ pins then, and the
//! site certificate the edge renews over its current one (by hand and by itself).

use std::sync::Arc;
use std::time::Duration;

use plantwire::clock::ManualClock;
use plantwire::log::checkpointer::checkpoint_now;
use plantwire::replication::edge::{ShipClasses, next_batch};
use plantwire::replication::renew;
use plantwire::replication::ship::{self, ShipOptions};
use plantwire::replication::witness;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use crate::replication::{HqSide, events, hashes, refused_code, start_hq};
use crate::support::TestServer;

const DAY: i64 = 86_400_000_000;

fn real_now_us() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// An HQ with its replication listener, and an edge `north` (on `clock`) enrolled there.
async fn enrolled_pair(clock: Arc<ManualClock>) -> (TestServer, TestServer, HqSide) {
    let hq = TestServer::start_with(|c| c.site = Some("hq".into())).await;
    let edge = TestServer::start_full(tempfile::tempdir().unwrap(), clock, |c| {
        c.site = Some("north".into())
    })
    .await;
    let side = start_hq(&hq).await;
    let code = side
        .sites
        .add("north", &side.addr, &side.ca_sha256, real_now_us())
        .unwrap()
        .encode()
        .unwrap();
    ship::enroll(&code, "north", edge.state().state_dir())
        .await
        .unwrap();
    (hq, edge, side)
}

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

/// Enrolment pins the edge's signing key at HQ. A log carrying another key than the pinned one is
/// refused whole (`signing_key_not_pinned`, nothing stored), with or without a checkpoint; with the site's own key pinned the
/// same batch is taken and its checkpoint witnessed.
#[tokio::test]
async fn hq_pins_the_sites_signing_key_at_enrolment_and_refuses_a_log_under_another() {
    let (_hq, edge, side) = enrolled_pair(Arc::new(ManualClock::new(real_now_us()))).await;
    let replica = side.replicas.replica("north").await.unwrap();
    let own = edge.state().signer().public_key();
    assert_eq!(witness::pinned_key(&replica).unwrap(), Some(own));

    events(&edge, 10).await;
    checkpoint_now(edge.state().log(), edge.state().signer())
        .await
        .unwrap();
    let batch = next_batch(edge.state().log(), 0, 1000, 1 << 20, ShipClasses::ALL).unwrap();
    assert!(batch.checkpoint.is_some());

    side.replicas
        .pin_signing_key("north", Some([7u8; 32]))
        .await
        .unwrap();
    let err = side
        .replicas
        .receive("north", batch.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.rejection().map(|r| r.code),
        Some("signing_key_not_pinned"),
        "{err}"
    );
    assert!(
        hashes(&replica).is_empty(),
        "nothing of the batch is stored"
    );
    // Without a checkpoint too: the logged key itself is refused.
    let mut bare = batch.clone();
    bare.checkpoint = None;
    let err = side.replicas.receive("north", bare).await.unwrap_err();
    assert_eq!(
        err.rejection().map(|r| r.code),
        Some("signing_key_not_pinned"),
        "{err}"
    );
    assert!(hashes(&replica).is_empty());

    side.replicas
        .pin_signing_key("north", Some(own))
        .await
        .unwrap();
    let ack = side.replicas.receive("north", batch).await.unwrap();
    assert_eq!(ack.head, edge.head_seq());
    assert!(ack.cosignature.is_some(), "the checkpoint is witnessed");
    assert_eq!(hashes(&replica), hashes(edge.state().log()));
    side.stop.cancel();
    side.replicas.close_all().await;
}

/// `replication renew` gets a new certificate for the same key over the current one (0600, a
/// temporary file renamed over the old). HQ takes the old one too until the site renews again
/// from the new one. Once a third of the certificate's life is left by the edge's clock, the
/// shipper renews by itself, then ships on with the new certificate.
#[tokio::test]
async fn a_site_renews_its_certificate_over_the_current_one_and_keeps_shipping() {
    let t0 = real_now_us();
    let clock = Arc::new(ManualClock::new(t0));
    let (_hq, edge, side) = enrolled_pair(clock.clone()).await;
    let dir = edge.state().state_dir().to_path_buf();
    let cert_path = ship::identity_dir(&dir).join("site.crt");
    let first = std::fs::read(&cert_path).unwrap();
    let v1 = renew::validity(&dir).unwrap().unwrap();
    assert!(!v1.due(t0));
    assert!(v1.due(t0 + 21 * DAY), "30 days: due with 10 left");

    let v2 = renew::renew_now("north", &dir).await.unwrap();
    let second = std::fs::read(&cert_path).unwrap();
    assert_ne!(first, second);
    assert!(v2.not_after_us >= v1.not_after_us);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cert_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(side.sites.site_of(&der(&first)).as_deref(), Some("north"));
    assert_eq!(side.sites.site_of(&der(&second)).as_deref(), Some("north"));
    // An edge that crashed before storing the renewed certificate still ships with the old one.
    std::fs::write(&cert_path, &first).unwrap();
    ship::probe(edge.state().log(), &dir).await.unwrap();
    std::fs::write(&cert_path, &second).unwrap();

    // Renewed again from the second: the first is no longer taken.
    renew::renew_now("north", &dir).await.unwrap();
    let third = std::fs::read(&cert_path).unwrap();
    assert_eq!(side.sites.site_of(&der(&first)), None);
    std::fs::write(&cert_path, &first).unwrap();
    let err = ship::probe(edge.state().log(), &dir).await.unwrap_err();
    assert_eq!(refused_code(&err), Some("unknown_certificate"), "{err}");
    std::fs::write(&cert_path, &third).unwrap();

    // By itself: 21 days on by the edge's clock, the shipper renews and ships on.
    clock.advance_us(21 * DAY);
    events(&edge, 20).await;
    let stop = CancellationToken::new();
    let opts = ShipOptions {
        batch_entries: 16,
        batch_bytes: 1 << 20,
        bandwidth: 0,
        ship: ShipClasses::ALL,
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
    .expect("the edge's log reaches HQ after the renewal")
    .unwrap();
    let fourth = std::fs::read(&cert_path).unwrap();
    assert_ne!(fourth, third, "the shipper renewed the certificate");
    assert_eq!(side.sites.site_of(&der(&fourth)).as_deref(), Some("north"));
    let replica = side.replicas.replica("north").await.unwrap();
    assert_eq!(hashes(&replica), hashes(edge.state().log()));

    stop.cancel();
    let _ = task.await;
    side.stop.cancel();
    side.replicas.close_all().await;
}
