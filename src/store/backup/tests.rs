//! The backup format's round trips: carried files, formats 1 and 2 still read, an HQ's sites.

use super::*;

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&SHA256, b).as_ref());
    out
}

fn target(root: &Path) -> SitesTarget<'_> {
    SitesTarget {
        root,
        replica_file: "plantwire.redb",
    }
}

/// `bytes` (a format-3 backup without sites) as format 2 (no site section) or 1 (no file
/// section either) wrote it, with its own checksum.
fn older(bytes: &[u8], format: u32) -> Vec<u8> {
    let manifest_len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let files_at = 16 + manifest_len;
    let body = &bytes[..bytes.len() - 32];
    assert_eq!(&body[body.len() - 2..], &[0, 0], "no sites");
    let body = &body[..body.len() - 2];
    let mut out = if format == FORMAT_V1 {
        assert_eq!(&body[files_at..files_at + 2], &[0, 0]);
        let mut v = body[..files_at].to_vec();
        v.extend_from_slice(&body[files_at + 2..]);
        v
    } else {
        body.to_vec()
    };
    out[8..12].copy_from_slice(&format.to_be_bytes());
    let sum = sha256(&out);
    out.extend_from_slice(&sum);
    out
}

#[test]
fn carried_files_round_trip_and_formats_1_and_2_are_still_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb"), 1 << 20).unwrap();
    let files = vec![BackupFile {
        name: "tls/ca.key".into(),
        sealed: b"sealed bytes".to_vec(),
    }];
    let mut v3 = Vec::new();
    store.write_backup(&mut v3, 7, &files).unwrap();
    let none_root = dir.path().join("sites-b");
    let restored = restore(
        &mut v3.as_slice(),
        &dir.path().join("b.redb"),
        target(&none_root),
    )
    .unwrap();
    assert_eq!(restored.manifest.format, FORMAT);
    assert_eq!(restored.files, files);
    assert!(restored.sites.is_empty());
    assert!(!none_root.exists(), "no sites, no directory");

    let mut none = Vec::new();
    store.write_backup(&mut none, 7, &[]).unwrap();
    for (format, name) in [(FORMAT_V1, "c.redb"), (FORMAT_V2, "d.redb")] {
        let old_bytes = older(&none, format);
        assert_eq!(verify(&mut old_bytes.as_slice()).unwrap().format, format);
        let root = dir.path().join(format!("sites-{format}"));
        let old = restore(
            &mut old_bytes.as_slice(),
            &dir.path().join(name),
            target(&root),
        )
        .unwrap();
        assert!(old.files.is_empty() && old.sites.is_empty());
        assert_eq!(old.manifest.site, restored.manifest.site);
    }
    // An unknown format is refused.
    let mut v4 = older(&none, FORMAT_V1);
    v4[8..12].copy_from_slice(&4u32.to_be_bytes());
    assert!(matches!(
        read_manifest(&mut v4.as_slice()),
        Err(BackupError::Format(4))
    ));
}

/// Sites by name: record files, and a replica store or none.
struct TestSites<'a>(Vec<(&'a str, Vec<BackupFile>, Option<&'a Store>)>);

impl SiteSource for TestSites<'_> {
    fn visit(&mut self, site: &str, visit: SiteVisit<'_>) -> Result<(), BackupError> {
        let (_, files, replica) = self.0.iter().find(|s| s.0 == site).unwrap();
        visit(files, *replica)
    }
}

fn put_meta(store: &Store, key: &str, value: &[u8]) {
    let wtx = store.db().unwrap().begin_write().unwrap();
    wtx.open_table(META).unwrap().insert(key, value).unwrap();
    wtx.commit().unwrap();
}

#[test]
fn an_hq_backup_carries_each_site_record_and_replica() {
    let dir = tempfile::tempdir().unwrap();
    let hq = Store::open(&dir.path().join("hq.redb"), 1 << 20).unwrap();
    let north = Store::open(&dir.path().join("north.redb"), 1 << 20).unwrap();
    put_meta(&north, "site", b"north");
    put_meta(&north, "probe", &[7; 300]);
    let record = |name: &str, b: &[u8]| BackupFile {
        name: name.into(),
        sealed: b.to_vec(),
    };
    let north_files = vec![
        record("site.json", b"{\"revoked\":false}"),
        record("nats-forward.json", b"{\"v\":1}"),
    ];
    let south_files = vec![record("site.json", b"{}")];
    let names = vec!["north".to_string(), "south".to_string()];
    let mut source = TestSites(vec![
        ("north", north_files.clone(), Some(&north)),
        ("south", south_files.clone(), None),
    ]);
    let mut bytes = Vec::new();
    let m = hq
        .write_backup_with_sites(&mut bytes, 9, &[], &names, &mut source)
        .unwrap();
    assert_eq!(m.sites, names);
    assert_eq!(verify(&mut bytes.as_slice()).unwrap().sites, names);

    let root = dir.path().join("sites");
    let r = restore(
        &mut bytes.as_slice(),
        &dir.path().join("hq2.redb"),
        target(&root),
    )
    .unwrap();
    assert_eq!(r.sites.len(), 2);
    assert_eq!(r.sites[0].files, north_files);
    assert_eq!(
        r.sites[0].replica.as_ref().map(|m| m.site.as_str()),
        Some("north")
    );
    assert!(r.sites[1].replica.is_none());
    assert_eq!(
        std::fs::read(root.join("north/nats-forward.json")).unwrap(),
        b"{\"v\":1}"
    );
    assert_eq!(std::fs::read(root.join("south/site.json")).unwrap(), b"{}");
    assert!(!root.join("south/plantwire.redb").exists());
    let back = Store::open(&root.join("north/plantwire.redb"), 1 << 20).unwrap();
    assert_eq!(
        back.read().unwrap().meta("probe").unwrap(),
        Some(vec![7; 300])
    );
    assert_eq!(
        back.read().unwrap().meta("site").unwrap(),
        Some(b"north".to_vec())
    );

    // A flipped byte inside a replica's rows: verify and restore refuse, and the restore
    // leaves neither the store nor the sites directory behind.
    let at = bytes
        .windows(300)
        .position(|w| w == [7; 300].as_slice())
        .unwrap();
    let mut bad = bytes.clone();
    bad[at + 10] ^= 1;
    assert!(matches!(
        verify(&mut bad.as_slice()),
        Err(BackupError::Checksum)
    ));
    let root2 = dir.path().join("sites2");
    let dest2 = dir.path().join("hq3.redb");
    assert!(restore(&mut bad.as_slice(), &dest2, target(&root2)).is_err());
    assert!(!dest2.exists() && !root2.exists());
    // A site whose name would leave the sites directory is refused before anything is read.
    let evil = vec!["../x".to_string()];
    assert!(matches!(
        hq.write_backup_with_sites(&mut Vec::new(), 9, &[], &evil, &mut source),
        Err(BackupError::BadName(_))
    ));
}
