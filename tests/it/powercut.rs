//! Power cuts: the real binary on lazyfs (`tests/lazyfs`), a FUSE file system that holds unsynced
//! writes in memory and drops them on command. Every acknowledged entry must survive the cut.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::lazyfs::{Lazyfs, binary};
use crate::process::{Producers, Running, command, default_server_section};
use crate::support::Client;

fn errno(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error()
}

const ENOSPC: i32 = 28;
/// About an SD card's fsync.
const SYNC_DELAY_MS: u64 = 5;

#[test]
#[cfg_attr(
    not(pw_has_fuse),
    ignore = "needs root, /dev/fuse and fusermount3 for lazyfs (CI runs it)"
)]
fn lazyfs_drops_what_was_not_synced_and_keeps_what_was() {
    let Some(bin) = binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
    let fs = Lazyfs::mount(&bin, &backing, &mnt);

    std::fs::write(mnt.join("unsynced"), b"gone after the cut").unwrap();
    let mut synced = std::fs::File::create(mnt.join("synced")).unwrap();
    synced.write_all(b"kept").unwrap();
    synced.sync_data().unwrap();
    synced.write_all(b", and this is not").unwrap();
    synced.set_len(9).unwrap(); // a pending shrink
    drop(synced);
    // Readers see everything written, synced or not, and close makes nothing durable.
    assert_eq!(std::fs::read(mnt.join("synced")).unwrap(), b"kept, and");
    assert_eq!(
        std::fs::read(mnt.join("unsynced")).unwrap(),
        b"gone after the cut"
    );
    assert!(fs.ctl("status").contains("pending_files=2"));

    // Disk full: writes and the sync of pending data fail with ENOSPC, until there is space.
    fs.ctl("full");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("synced"))
        .unwrap();
    assert_eq!(errno(&f.write_all(b"x").unwrap_err()), Some(ENOSPC));
    assert_eq!(errno(&f.sync_all().unwrap_err()), Some(ENOSPC));
    fs.ctl("space");
    f.sync_all().unwrap();
    drop(f);
    std::fs::write(mnt.join("late"), b"unsynced").unwrap();

    // Across page boundaries, and a shrink then a growth reads zeros, before and after the sync.
    use std::os::unix::fs::FileExt;
    let pages = std::fs::File::create(mnt.join("pages")).unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    pages.write_all_at(&data, 3000).unwrap();
    pages.sync_all().unwrap();
    pages.set_len(5000).unwrap();
    pages.set_len(20_000).unwrap();
    let mut expected = vec![0u8; 20_000];
    expected[3000..5000].copy_from_slice(&data[..2000]);
    assert_eq!(std::fs::read(mnt.join("pages")).unwrap(), expected);
    pages.sync_all().unwrap();
    drop(pages);

    let reply = fs.ctl("cut");
    assert!(reply.contains("dropped 2 files"), "{reply}");
    // After the cut the machine is off: nothing is served any more.
    assert!(std::fs::read(mnt.join("synced")).is_err());
    drop(fs);

    let _fs = Lazyfs::mount(&bin, &backing, &mnt);
    assert_eq!(std::fs::read(mnt.join("synced")).unwrap(), b"kept, and");
    // Names are durable at once (see docs/testing.md); their unsynced contents are not.
    assert_eq!(std::fs::read(mnt.join("unsynced")).unwrap(), b"");
    assert_eq!(std::fs::read(mnt.join("late")).unwrap(), b"");
    assert_eq!(std::fs::read(mnt.join("pages")).unwrap(), expected);
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n
}

/// What a series of power cuts did.
#[derive(Debug, Default)]
struct Tally {
    cycles: usize,
    acknowledged: usize,
    lost: Vec<String>,
    chain_failures: Vec<String>,
    cuts_that_dropped_data: usize,
}

/// Cycles from `POWERCUT_CYCLES` (benches/powercut.sh), 5 by default.
fn cycles() -> usize {
    std::env::var("POWERCUT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_fuse),
    ignore = "needs root, /dev/fuse and fusermount3 for lazyfs (CI runs it)"
)]
async fn power_cuts_under_load_lose_nothing_acknowledged() {
    let Some(bin) = binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
    let cfg = dir.path().join("plantwire.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nsite = \"powercut\"\nstate_dir = \"{}\"\n{}",
            mnt.join("state").display(),
            default_server_section()
        ),
    )
    .unwrap();
    let mut fs = Lazyfs::mount_slow(&bin, &backing, &mnt, SYNC_DELAY_MS);
    crate::process::init(&cfg);
    let token = crate::process::add_device(&cfg, "pump");

    let mut tally = Tally::default();
    for cycle in 0..cycles() {
        let server = Running::start(&cfg);
        let ca = std::fs::read_to_string(mnt.join("state/tls/ca.crt")).unwrap();
        let client = Client::new(server.addr, &ca);
        let producers = Producers::start(&client, &token, &format!("cycle {cycle}"), 6);
        tokio::time::sleep(Duration::from_millis(300 + random_below(900))).await;
        // The power goes: unsynced writes are gone, and so is the process.
        let cut = fs.ctl(if cycle % 2 == 0 { "cut" } else { "cut torn" });
        let mut server = server;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let acked = producers.acknowledged().await;
        drop(fs);
        fs = Lazyfs::mount_slow(&bin, &backing, &mnt, SYNC_DELAY_MS);

        let lost = check(&cfg, &acked, &mut tally);
        eprintln!(
            "cycle {cycle}: {} acknowledged, {lost} lost; lazyfs: {cut}",
            acked.len()
        );
        tally.cycles += 1;
        tally.acknowledged += acked.len();
        tally.cuts_that_dropped_data += usize::from(!cut.contains(" 0 bytes"));
    }
    eprintln!(
        "POWERCUT: {} cycles, {} acknowledged, {} lost, {} chain failures, {} cuts dropped unsynced data",
        tally.cycles,
        tally.acknowledged,
        tally.lost.len(),
        tally.chain_failures.len(),
        tally.cuts_that_dropped_data
    );
    let first: Vec<_> = tally.lost.iter().take(10).collect();
    assert!(
        tally.lost.is_empty(),
        "{} lost, first: {first:?}",
        tally.lost.len()
    );
    assert!(
        tally.chain_failures.is_empty(),
        "{:?}",
        tally.chain_failures
    );
    assert!(
        tally.acknowledged > 0,
        "the load produced acknowledged appends"
    );
}

/// Reopens the store as it is after the cut: each acknowledged entry is there with its content,
/// the chain verifies, and so does `plantwire audit verify`. Returns how many entries were lost.
fn check(cfg: &Path, acked: &[(u64, String)], tally: &mut Tally) -> usize {
    let config = plantwire::Config::load(Some(cfg), &Default::default()).unwrap();
    let (store, key, site) = plantwire::state::open_offline(&config).unwrap();
    let rtx = store.read().unwrap();
    let before = tally.lost.len();
    for (seq, msg) in acked {
        let body = plantwire::log::read::entry(&rtx, &site, &key, *seq)
            .unwrap()
            .map(|e| serde_json::from_slice::<serde_json::Value>(&e.body).unwrap());
        match body {
            Some(b) if b["message"] == msg.as_str() => {}
            other => tally.lost.push(format!("seq {seq} ({msg}): {other:?}")),
        }
    }
    let report = plantwire::log::verify(&store, &site, &key).unwrap();
    if !report.ok() {
        tally.chain_failures.push(format!("{report:?}"));
    }
    drop(rtx);
    drop(store);
    let out = command(&["audit", "verify", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    if !out.status.success() {
        tally
            .chain_failures
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    tally.lost.len() - before
}
