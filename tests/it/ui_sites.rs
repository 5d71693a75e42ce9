//! HQ's site screens in a real headless Chromium: an HQ admin opens **Sites** from the bar, sees
//! the enrolled site connected with its unacknowledged critical alarm, grants the site to a user
//! and takes the grant back, switches to the site and reads its replicated entries; axe-core
//! finds nothing serious on either screen. A site that dropped entries before replication shows
//! its gap on the All-sites screen.

use serde_json::json;

use std::time::Duration;

use crate::chat::upload;
use crate::chat_support::{Api, PW};
use crate::hq_tenancy::{edge, start_hq};
use crate::ui::{BROWSER, origin, sign_in, spki_hash};
use crate::ui_chat_product::axe;
use crate::webdriver::{Driver, find_browser};
use plantwire::store::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn an_hq_admin_sees_every_site_and_opens_one_sites_entries_read_only() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let hq = start_hq().await;
    let alpha = edge(&hq, "alpha", "ui-marker-41d7").await;
    hq.user("ada", Role::Admin, PW).await;
    hq.user("vera", Role::Viewer, PW).await;
    let base = origin(&hq);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&hq).await).await;
    sign_in(&b, &base, "ada").await;

    b.click("[data-nav='/sites']").await;
    b.find("#all-sites tr[data-site='alpha']").await;
    let row = b
        .js(
            "const r = document.querySelector('#all-sites tr[data-site=alpha]');
             return [r.querySelector('.connected').dataset.connected, r.querySelector('.unacked').textContent]",
            json!([]),
        )
        .await;
    assert_eq!(row, json!(["true", "◆ critical 1"]));

    // Grant alpha to vera as an operator through the form, then take it back.
    let grants = "#site-grants section[data-site='alpha']";
    b.find(&format!("{grants} form.grant")).await;
    b.type_into(&format!("{grants} input[name='user']"), "vera")
        .await;
    b.js(
        "const s = document.querySelector(\"#site-grants section[data-site='alpha'] select[name='role']\");
         s.value = 'operator';",
        json!([]),
    )
    .await;
    b.click(&format!("{grants} form.grant button")).await;
    b.find(&format!(
        "{grants} li[data-user='vera'][data-role='operator']"
    ))
    .await;
    let granted = hq
        .state()
        .log()
        .read()
        .unwrap()
        .site_grants_of("vera")
        .unwrap();
    assert_eq!(granted.len(), 1);
    assert_eq!(
        (granted[0].site.as_str(), granted[0].role),
        ("alpha", Role::Operator)
    );
    let violations = axe(&b).await;
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    b.click(&format!("{grants} li[data-user='vera'] button"))
        .await;
    b.wait_for(
        "the grant taken back",
        "return !document.querySelector(\"#site-grants li[data-user='vera']\")",
        json!([]),
    )
    .await;
    assert!(
        hq.state()
            .log()
            .read()
            .unwrap()
            .site_grants_of("vera")
            .unwrap()
            .is_empty()
    );

    // A message at alpha with a file: once it and its attachment have followed to HQ, the site's
    // screen links the file, and the link downloads it byte for byte.
    alpha.user("alice", Role::Operator, PW).await;
    let alice = Api::login(&alpha.client(), "alice", PW).await;
    let g = alice.group("Shift", &[]).await;
    let up = upload(&alice, "valve-notes.txt", b"valve 7 closed\n".to_vec()).await;
    assert_eq!(up.status, 201, "{:?}", up.body);
    let id = up.json()["id"].as_str().unwrap().to_string();
    let sent = alice
        .post(
            &format!("/api/v1/conversations/{g}/messages"),
            json!({"key": "k1", "text": "see file", "attachments": [id]}),
        )
        .await;
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    let head = alpha.head_seq();
    let log = alpha.state().log().clone();
    tokio::time::timeout(Duration::from_secs(60), async {
        while plantwire::replication::edge::retention_floor(&log).unwrap() < head {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the message and its attachment follow to HQ");

    b.js(
        "const s = document.getElementById('site-switcher');
         s.value = 'alpha'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.wait_for(
        "the site's entries",
        "return [...document.querySelectorAll('#site-entries td.summary')].some(td => td.textContent.includes('ui-marker-41d7'))",
        json!([]),
    )
    .await;
    let path = b.js("return location.pathname", json!([])).await;
    assert_eq!(path, "/sites/alpha");
    let link = "#site-entries ul.site-attachments a[download='valve-notes.txt']";
    b.find(link).await;
    let href = b
        .js(
            "return document.querySelector(arguments[0]).getAttribute('href')",
            json!([link]),
        )
        .await;
    assert_eq!(href, json!(format!("/api/v1/sites/alpha/attachments/{id}")));
    let got = b
        .js_async(
            "const done = arguments[1];
             fetch(document.querySelector(arguments[0]).href).then(r => r.text()).then(done, e => done('error ' + e))",
            json!([link]),
        )
        .await;
    assert_eq!(got, json!("valve 7 closed\n"));
    // Read-only: no form and no button but paging on the site's screen.
    let controls = b
        .js(
            "return document.querySelectorAll('.site-entries form, .site-entries button:not(#site-older)').length",
            json!([]),
        )
        .await;
    assert_eq!(controls, 0);
    let violations = axe(&b).await;
    assert!(violations.is_empty(), "{}", violations.join("\n"));

    b.quit().await;
    alpha.stop().await;
    hq.stop().await;
}

/// A site that dropped entries before replication shows its gap on the All-sites screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_all_sites_screen_shows_a_sites_gap() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let (hq, edge, from, to) = crate::replication_gap::hq_with_a_gap().await;
    hq.user("ada", Role::Admin, PW).await;
    let base = origin(&hq);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&hq).await).await;
    sign_in(&b, &base, "ada").await;
    b.click("[data-nav='/sites']").await;
    b.find("#all-sites tr[data-site='north'] .gap").await;
    let gap = b
        .js(
            "const g = document.querySelector('#all-sites tr[data-site=north] .gap');
             return [g.dataset.from, g.dataset.to, g.textContent]",
            json!([]),
        )
        .await;
    assert_eq!(gap[0], json!(from.to_string()));
    assert_eq!(gap[1], json!(to.to_string()));
    assert!(
        gap[2]
            .as_str()
            .unwrap()
            .contains("dropped before replication"),
        "{gap}"
    );
    b.quit().await;
    edge.stop().await;
    hq.stop().await;
}
