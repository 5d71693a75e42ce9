//! The devices screen in a real headless Chromium: an admin adds a certificate device, gets the
//! bundle once as blob downloads, and revokes it after the confirmation.

use serde_json::json;

use crate::chat_support::PW;
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, shots_dir, sign_in, spki_hash};
use crate::webdriver::{Driver, find_browser};
use plantwire::store::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_certificate_device_downloads_the_bundle_once_and_revokes_it() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("ada", Role::Admin, PW).await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    sign_in(&b, &base, "ada").await;

    b.click("[data-nav='/admin']").await;
    b.click("a[href='/admin/devices']").await;
    b.type_into("input[aria-label='Device name']", "gw-ui")
        .await;
    b.js(
        "const s = document.querySelector('select[aria-label=Credential]');
         s.value = 'certificate'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.click("form.card button.primary").await;
    // The bundle: four downloads from blob URLs, and the PKCS#12 password, shown once.
    b.find("a[download='gw-ui.p12']").await;
    let hrefs = b
        .js(
            "return [...document.querySelectorAll('a[download]')].map(a => a.download + ' ' + a.href)",
            json!([]),
        )
        .await;
    let hrefs: Vec<String> = serde_json::from_value(hrefs).unwrap();
    for name in ["gw-ui.crt", "ca.crt", "gw-ui.key", "gw-ui.p12"] {
        assert!(
            hrefs
                .iter()
                .any(|h| h.starts_with(&format!("{name} blob:"))),
            "{name}: {hrefs:?}"
        );
    }
    b.find("tr[data-device='gw-ui']").await;
    let row = b
        .js(
            "return document.querySelector('tr[data-device=\"gw-ui\"]').textContent",
            json!([]),
        )
        .await;
    assert!(row.as_str().unwrap().contains("certificate"), "{row}");
    b.screenshot(&shots_dir().join("desktop-devices.png")).await;

    // Revoke, after the confirmation.
    b.click("tr[data-device='gw-ui'] button.danger").await;
    assert!(b.alert_text().await.unwrap().contains("Revoke gw-ui"));
    b.accept_alert().await;
    b.wait_for(
        "revoked",
        "return document.querySelector('tr[data-device=\"gw-ui\"]').textContent.includes('revoked')",
        json!([]),
    )
    .await;
    let row = server
        .state()
        .log()
        .read()
        .unwrap()
        .device("gw-ui")
        .unwrap()
        .unwrap();
    assert!(row.revoked_at_us.is_some());
    b.quit().await;
}
