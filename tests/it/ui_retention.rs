//! The retention screen in a real headless Chromium: an admin sets the site's keep for one class,
//! places and releases the site's legal hold, and holds a conversation then releases it; each
//! change is what the server stores, and axe-core finds nothing serious on the screen.

use serde_json::json;

use crate::chat_support::PW;
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, sign_in, spki_hash};
use crate::ui_chat_product::axe;
use crate::webdriver::{Driver, find_browser};
use plantwire::retention::{Keep, SITE_SCOPE, stream_scope};
use plantwire::store::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn an_admin_sets_a_class_keep_and_places_and_releases_holds_from_the_retention_screen() {
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
    let retention = server.state().retention().clone();
    let site = || retention.scope_row(SITE_SCOPE).unwrap().unwrap_or_default();

    b.click("[data-nav='/admin']").await;
    b.click("a[href='/admin/retention']").await;
    b.find("#retention-classes tr[data-class='chat']").await;
    let violations = axe(&b).await;
    assert!(violations.is_empty(), "{}", violations.join("\n"));

    // The site keeps chat for 30 days: stored, and shown as in force.
    b.type_into(
        "input[aria-label='Keep Conversations and contacts']",
        "30 days",
    )
    .await;
    b.click("tr[data-class='chat'] button").await;
    b.wait_for(
        "chat keep in force",
        "return document.querySelector('tr[data-class=chat] .effective').textContent === '30 days'",
        json!([]),
    )
    .await;
    assert_eq!(site().classes.chat, Some(Keep::Days(30)));

    // The whole site under legal hold, then released.
    b.click("#site-hold").await;
    b.wait_for(
        "site held",
        "return document.getElementById('retention-summary').textContent.includes('Legal hold')",
        json!([]),
    )
    .await;
    assert!(site().hold);
    b.click("#site-hold").await;
    b.wait_for(
        "site released",
        "return !document.getElementById('retention-summary').textContent.includes('Legal hold')",
        json!([]),
    )
    .await;
    let row = site();
    assert!(!row.hold);
    assert_eq!(
        row.classes.chat,
        Some(Keep::Days(30)),
        "the class keep stays"
    );

    // A conversation held from the form, listed, then released (no row is left).
    b.type_into("input[aria-label='Conversation id or stream']", "c-line3")
        .await;
    b.click("#scope-hold").await;
    b.click("#retention-scope button.primary").await;
    let held = "tr[data-scope='stream:conv/c-line3']";
    b.find(held).await;
    let scope = stream_scope("conv/c-line3");
    assert!(retention.scope_row(&scope).unwrap().unwrap().hold);
    b.click(&format!("{held} button")).await;
    b.wait_for(
        "hold released",
        "return !document.querySelector(arguments[0])",
        json!([held]),
    )
    .await;
    assert_eq!(retention.scope_row(&scope).unwrap(), None);
    b.quit().await;
}
