//! HQ's site screens in a real headless Chromium: an HQ admin opens **Sites** from the bar, sees
//! the enrolled site connected with its unacknowledged critical alarm, switches to the site and
//! reads its replicated entries; axe-core finds nothing serious on either screen.

use serde_json::json;

use crate::chat_support::PW;
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
    let violations = axe(&b).await;
    assert!(violations.is_empty(), "{}", violations.join("\n"));

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
