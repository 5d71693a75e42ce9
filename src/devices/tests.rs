//! Tests of device authentication through the cache, against a real store in a temp dir: a
//! revocation or an expiry is seen at once, and refusals never fill the cache.

use crate::device_certs::{self, NO_TOKEN};
use crate::log::{Author, Log, tests::open};
use crate::store::{DeviceCertRow, DeviceRow};

use super::{AUTH_CACHE_CAPACITY, AuthCache, add, authenticate, revoke};

/// Registers `name` as a certificate-only device whose certificate `fingerprint` is valid until
/// `not_after_us`, as `device_certs::add` stores it (without a CA to issue a real one).
async fn add_cert_device(log: &Log, name: &str, fingerprint: [u8; 32], not_after_us: i64) {
    let name = name.to_string();
    log.submit(move |tx| {
        let now = tx.now_us();
        tx.views().put_device(&DeviceRow {
            name: name.clone(),
            token_hash: NO_TOKEN,
            created_at_us: now,
            created_by: "system".into(),
            revoked_at_us: None,
        })?;
        tx.views().put_device_cert(
            &fingerprint,
            &DeviceCertRow {
                fingerprint: hex::encode(fingerprint),
                device: name.clone(),
                serial: "01".into(),
                issued_at_us: now,
                not_after_us,
                revoked_at_us: None,
            },
        )?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_although_it_was_cached() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let cache = AuthCache::new();
    let (_, token) = add(&log, "pump-1", &Author::System).await.unwrap();

    let first = authenticate(&log, &cache, &token).unwrap().unwrap();
    assert_eq!(first.name, "pump-1");
    assert_eq!(cache.len(), 1, "a known token is cached");
    let again = authenticate(&log, &cache, &token).unwrap().unwrap();
    assert_eq!(again, first);

    revoke(&log, "pump-1", &Author::System).await.unwrap();
    assert!(authenticate(&log, &cache, &token).unwrap().is_none());
    log.close().await;
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_at_once_although_it_was_cached() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let cache = AuthCache::new();
    let fp = [0x5a; 32];
    add_cert_device(&log, "meter-1", fp, i64::MAX).await;
    let now = log.now_us();

    let device = device_certs::authenticate(&log, &cache, &fp, now).unwrap();
    assert_eq!(device.unwrap().name, "meter-1");
    assert_eq!(cache.len(), 1, "a valid certificate is cached");

    revoke(&log, "meter-1", &Author::System).await.unwrap();
    assert!(
        device_certs::authenticate(&log, &cache, &fp, now)
            .unwrap()
            .is_none()
    );
    log.close().await;
}

#[tokio::test]
async fn a_cached_certificate_is_refused_once_it_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let cache = AuthCache::new();
    let fp = [0xc3; 32];
    let not_after = log.now_us() + 60_000_000;
    add_cert_device(&log, "meter-2", fp, not_after).await;

    let before = device_certs::authenticate(&log, &cache, &fp, not_after).unwrap();
    assert_eq!(before.unwrap().name, "meter-2");
    assert_eq!(cache.len(), 1);
    let generation = log.devices_generation();

    // No commit in between: the answer comes from the cache, which must still check the time.
    let after = device_certs::authenticate(&log, &cache, &fp, not_after + 1).unwrap();
    assert!(after.is_none());
    assert_eq!(log.devices_generation(), generation);
    assert_eq!(cache.len(), 1, "the entry was a hit, not read again");
    log.close().await;
}

#[tokio::test]
async fn unknown_credentials_do_not_grow_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let cache = AuthCache::new();
    let (_, token) = add(&log, "pump-2", &Author::System).await.unwrap();
    authenticate(&log, &cache, &token).unwrap().unwrap();
    let now = log.now_us();

    for n in 0..100u8 {
        let guess = format!("pwd_guess{n}");
        assert!(authenticate(&log, &cache, &guess).unwrap().is_none());
        let fp = [n; 32];
        assert!(
            device_certs::authenticate(&log, &cache, &fp, now)
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(cache.len(), 1, "only the one positive answer is held");
    log.close().await;
}

#[tokio::test]
async fn only_writes_to_device_tables_move_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let start = log.devices_generation();
    log.submit(|tx| tx.append(crate::log::tests::event(1)))
        .await
        .unwrap();
    assert_eq!(log.devices_generation(), start, "an entry alone");
    add(&log, "pump-3", &Author::System).await.unwrap();
    let added = log.devices_generation();
    assert!(added > start, "adding a device");
    // A refused job writes nothing: the generation stays.
    assert!(add(&log, "pump-3", &Author::System).await.is_err());
    assert_eq!(log.devices_generation(), added);
    log.close().await;
}

#[test]
fn the_cache_is_bounded() {
    let cache = AuthCache::new();
    let row = |n: usize| DeviceRow {
        name: format!("d{n}"),
        token_hash: [0; 32],
        created_at_us: 0,
        created_by: "system".into(),
        revoked_at_us: None,
    };
    for n in 0..(AUTH_CACHE_CAPACITY * 2 + 7) {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&(n as u64).to_be_bytes());
        cache.insert_token(hash, 1, row(n));
        assert!(cache.len() <= AUTH_CACHE_CAPACITY);
    }
    assert!(!cache.is_empty());
}

#[test]
fn an_answer_read_before_a_newer_change_is_not_kept() {
    let cache = AuthCache::new();
    let row = DeviceRow {
        name: "d".into(),
        token_hash: [1; 32],
        created_at_us: 0,
        created_by: "system".into(),
        revoked_at_us: None,
    };
    cache.insert_token([1; 32], 5, row.clone());
    // A slower reader that took generation 4 before the change must not overwrite the entry.
    cache.insert_token([2; 32], 4, row.clone());
    assert!(cache.token(&[2; 32], 4).is_none());
    assert!(cache.token(&[2; 32], 5).is_none());
    assert_eq!(cache.token(&[1; 32], 5), Some(row.clone()));
    assert!(
        cache.token(&[1; 32], 6).is_none(),
        "a newer generation misses"
    );
}

#[test]
fn reopening_the_store_in_place_moves_the_generation() {
    // A commit reported as failed may be durable after the reopen's repair: nothing cached before
    // may answer after it.
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
    let before = store.devices_generation();
    store.reopen(std::time::Duration::from_millis(250)).unwrap();
    assert!(store.devices_generation() > before);
}
