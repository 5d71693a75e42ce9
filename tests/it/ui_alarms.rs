//! The alarm summary in a real headless Chromium: an alarm a device raises appears without a
//! reload, an operator acknowledges it with a comment from the page, and the journal shows who.

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
async fn a_device_alarm_appears_live_and_is_acknowledged_with_a_comment_from_the_page() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("olga", Role::Operator, PW).await;
    let token = server.device("plc-4").await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    sign_in(&b, &base, "olga").await;
    b.click("[data-nav='/alarms']").await;
    b.find(".screen.alarms tbody").await;

    let raised = server
        .client()
        .with_bearer(
            hyper::Method::POST,
            "/api/v1/alarms",
            &token,
            Some(
                json!({"source": "conveyor-2", "condition": "belt.slip", "active": true,
                        "priority": "high", "message": "belt slipping"}),
            ),
        )
        .await;
    assert_eq!(raised.status, 201, "{:?}", raised.body);
    let id = raised.json()["id"].as_u64().unwrap();
    let row = format!("tr.alarm[data-id='{id}']");
    b.wait_for(
        "the raised alarm, unacknowledged",
        "const r = document.querySelector(arguments[0]);
         return r && r.dataset.state === 'unack' && r.textContent.includes('conveyor-2')
           && r.querySelector('.prio').textContent.includes('high')",
        json!([row]),
    )
    .await;
    b.screenshot(&shots_dir().join("desktop-alarms.png")).await;

    b.type_into("input[aria-label='Comment']", "belt tension checked")
        .await;
    b.click(&format!("{row} button.primary")).await;
    b.wait_for(
        "the alarm acknowledged",
        "const r = document.querySelector(arguments[0]); return r && r.dataset.state === 'acked'",
        json!([row]),
    )
    .await;
    b.click(&format!("{row} a")).await;
    b.wait_for(
        "the journal with who acknowledged it",
        "return [...document.querySelectorAll('.journal li')]
           .some(li => li.textContent.includes('ack by user:olga — belt tension checked'))",
        json!([]),
    )
    .await;

    let olga = Api::login(&server.client(), "olga", PW).await;
    let detail = olga.ok(&format!("/api/v1/alarms/{id}")).await;
    let ack = &detail["journal"][1];
    assert_eq!(ack["kind"], "alarm.ack");
    assert_eq!(ack["by"], "user:olga");
    assert_eq!(ack["note"], "belt tension checked");
    b.quit().await;
}
