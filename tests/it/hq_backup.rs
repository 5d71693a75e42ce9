//! An HQ's backup carries every enrolled site's record and replica: taken through the running
//! HQ's control socket, restored into a fresh state directory, the restored HQ verifies the site,
//! shows the backup's head, and the edge ships on from there (what HQ lost again), once each.

use std::time::Duration;

use plantwire::config::{Config, ReplicationRole};
use plantwire::replication::nats::cursor;
use plantwire::store::backup::{Manifest, read_manifest};

use plantwire::store::Role;

use crate::chat_support::{Api, PW};
use crate::replication::{enrolled, events, verify_site};
use crate::support::TestServer;

fn hq_config(c: &mut Config, listen: std::net::SocketAddr) {
    c.site = Some("hq".into());
    c.replication.role = ReplicationRole::Hq;
    c.replication.listen = vec![listen];
}

/// Waits until HQ has acknowledged the edge's whole log; its head.
async fn shipped(edge: &TestServer) -> u64 {
    let head = edge.head_seq();
    let rt = edge.state().replication().unwrap().clone();
    let mut acked = rt.edge().unwrap().acked.subscribe();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|&a| a >= head))
        .await
        .expect("the edge ships to HQ")
        .unwrap();
    head
}

/// `site list --json` at `hq`: north's seq and head hash.
async fn north_head(hq: &TestServer) -> (u64, String) {
    use plantwire::replication::commands::SiteCommand;
    let list = crate::replication::admin(
        hq,
        plantwire::admin::Request::Site {
            site: SiteCommand::List { json: true },
        },
    )
    .await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v[0]["site"], "north");
    (
        v[0]["seq"].as_u64().unwrap(),
        v[0]["head_hash"].as_str().unwrap().to_string(),
    )
}

/// Every seq of north's replica at `hq` has the edge's hash: nothing duplicated, nothing missing.
async fn same_log(hq: &TestServer, edge: &TestServer, head: u64) {
    let replica = hq.replica("north").await;
    let (r, e) = (replica.read().unwrap(), edge.state().log().read().unwrap());
    assert_eq!(replica.head(&r).unwrap(), head);
    for seq in 1..=head {
        let ours = r.log_meta(seq).unwrap().expect("every seq at HQ");
        let theirs = edge.state().log().entry(&e, seq).unwrap().unwrap();
        assert_eq!(
            (ours.prev, ours.hash),
            (theirs.prev, theirs.hash),
            "seq {seq}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hq_backup_restores_its_sites_and_the_edge_ships_on() {
    let hq = TestServer::start_with(|c| hq_config(c, "127.0.0.1:0".parse().unwrap())).await;
    let listen: std::net::SocketAddr = hq
        .state()
        .replication()
        .unwrap()
        .hq()
        .unwrap()
        .advertise
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let edge_dir = enrolled(&hq, "north").await;
    let edge = TestServer::start_in(edge_dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    events(&edge, 15).await;
    let head = shipped(&edge).await;
    let before = north_head(&hq).await;
    assert_eq!(before.0, head);
    let site_dir = hq.path().join("sites").join("north");
    cursor::store(&site_dir, "PLANTWIRE", 4).await.unwrap();

    // The backup, through the running HQ's control socket.
    let control = plantwire::control::ControlSocket::start(hq.state()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("hq.pwbackup");
    let config = hq.state().config().clone();
    let (cfg, f) = (config.clone(), file.clone());
    tokio::task::spawn_blocking(move || plantwire::maintenance::backup(&cfg, &f, false))
        .await
        .unwrap()
        .unwrap();
    control.stop().await;
    // Shipped after the backup: the restored HQ lacks these and takes them again.
    events(&edge, 5).await;
    let head_after = shipped(&edge).await;
    assert_eq!(head_after, head + 5);
    let manifest: Manifest = read_manifest(&mut std::io::BufReader::new(
        std::fs::File::open(&file).unwrap(),
    ))
    .unwrap();
    assert_eq!(manifest.sites, vec!["north".to_string()]);
    assert_eq!(manifest.format, 3);

    // HQ gone (the edge too, so nothing ships before the checks); a fresh state directory with
    // only the data key, restored from the backup.
    let edge_dir = edge.stop().await;
    let old = hq.stop().await;
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(old.path().join("data.key"), fresh.path().join("data.key")).unwrap();
    let mut restore_cfg = config.clone();
    restore_cfg.state_dir = Some(fresh.path().to_path_buf());
    let f = file.clone();
    tokio::task::spawn_blocking(move || plantwire::maintenance::restore(&restore_cfg, &f, false))
        .await
        .unwrap()
        .unwrap();
    let restored_site = fresh.path().join("sites").join("north");
    assert_eq!(
        std::fs::read(restored_site.join("site.json")).unwrap(),
        std::fs::read(site_dir.join("site.json")).unwrap()
    );
    assert_eq!(cursor::load(&restored_site, "PLANTWIRE").unwrap(), 4);
    drop(old);

    // The restored HQ, on the address the edge knows: the site verifies, shows the same head,
    // and the edge ships on from its cursor.
    let hq = TestServer::start_in(fresh, |c| hq_config(c, listen)).await;
    verify_site(&hq, "north", "purged").await;
    assert_eq!(north_head(&hq).await, before);
    hq.user("boss", Role::Admin, PW).await;
    let boss = Api::login(&hq.client(), "boss", PW).await;
    let sites = boss.call(hyper::Method::GET, "/api/v1/sites", None).await;
    assert_eq!(sites.status, 200, "{:?}", sites.body);
    assert_eq!(sites.json()["sites"][0]["seq"], head);
    assert_eq!(sites.json()["sites"][0]["head_hash"], before.1.as_str());
    let edge = TestServer::start_in(edge_dir, |c| {
        c.site = Some("north".into());
        c.replication.role = ReplicationRole::Edge;
    })
    .await;
    events(&edge, 7).await;
    let head2 = shipped(&edge).await;
    assert_eq!(head2, head + 5 + 7);
    assert_eq!(north_head(&hq).await.0, head2);
    same_log(&hq, &edge, head2).await;
    verify_site(&hq, "north", "purged").await;
}
