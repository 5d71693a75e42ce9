//! The header search box in a real headless Chromium against the real server: results grouped by
//! kind with marked words, a message hit opening its conversation at the message (older pages
//! loaded back to it), an event hit opening the event viewer on that event.

use serde_json::json;

use crate::chat_support::{Api, PW};
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, shots_dir, sign_in, spki_hash};
use crate::webdriver::{Driver, find_browser};
use plantwire::store::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_search_box_groups_hits_and_opens_the_message_and_the_event() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("olga", Role::Operator, PW).await;
    let olga = Api::login(&server.client(), "olga", PW).await;
    let g = olga.group("shift-b", &[]).await;
    let msg = olga
        .say(&g, "k1", "Gasket on valve 3 is weeping again")
        .await;
    // More than two pages after it: the hit is not in the page a conversation opens with.
    for i in 0..120 {
        olga.say(&g, &format!("f{i}"), &format!("reading {i} normal"))
            .await;
    }
    let dev = server.device("valve-3").await;
    let res = server
        .client()
        .post_json(
            "/api/v1/events",
            Some(&dev),
            &json!({"source": "valve-3", "type": "leak", "message": "gasket leak detected"}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let ev = res.json()["seq"].as_u64().unwrap();

    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let s = driver.session(&spki_hash(&server).await).await;
    sign_in(&s, &base, "olga").await;
    s.type_into("#search-q", "gask*").await;
    s.js(
        "document.querySelector('form.search-box').requestSubmit()",
        json!([]),
    )
    .await;
    s.find(&format!(
        ".search-group[data-kind='message'] button[data-seq='{msg}']"
    ))
    .await;
    s.find(&format!(
        ".search-group[data-kind='event'] button[data-seq='{ev}']"
    ))
    .await;
    let marked = s
        .js(
            "return [...document.querySelectorAll('.search-snippet mark')].map(m => m.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(marked, json!(["Gasket", "gasket"]), "{marked}");
    s.screenshot(&shots_dir().join("desktop-search.png")).await;

    // The message opens in its conversation, marked.
    s.click(&format!(
        ".search-group[data-kind='message'] button[data-seq='{msg}']"
    ))
    .await;
    s.find(&format!(".msg.search-hit[data-seq='{msg}']")).await;
    assert_eq!(
        s.js("return location.pathname", json!([])).await,
        json!(format!("/c/{g}"))
    );

    // The event opens in the viewer with its detail.
    s.js("history.back()", json!([])).await;
    s.find(&format!(
        ".search-group[data-kind='event'] button[data-seq='{ev}']"
    ))
    .await;
    s.click(&format!(
        ".search-group[data-kind='event'] button[data-seq='{ev}']"
    ))
    .await;
    s.wait_for(
        "the event detail",
        "return document.getElementById('detail-seq')?.textContent === arguments[0]",
        json!([ev.to_string()]),
    )
    .await;
    s.quit().await;
}
