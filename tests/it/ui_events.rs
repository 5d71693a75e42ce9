//! The event viewer in a real headless Chromium against the real server: a device publishes and
//! the row appears live without a reload, the detail pane shows the entry's seq and hash, the
//! filters and export links work, and the page stays readable at 360×740.

use serde_json::json;

use crate::chat_support::PW;
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, shots_dir, sign_in, spki_hash};
use crate::webdriver::{Driver, find_browser};
use plantwire::store::Role;

async fn publish(server: &TestServer, token: &str, body: serde_json::Value) -> u64 {
    let res = server
        .client()
        .post_json("/api/v1/events", Some(token), &body)
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    res.json()["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn a_published_event_appears_live_and_its_detail_shows_seq_and_hash() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("vera", Role::Viewer, PW).await;
    let pump = server.device("pump-7").await;
    let valve = server.device("valve-2").await;
    let earlier = publish(
        &server,
        &valve,
        json!({"source": "valve-2", "type": "stuck", "severity": "error"}),
    )
    .await;
    let base = origin(&server);
    let shots = shots_dir();
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let s = driver.session(&spki_hash(&server).await).await;
    sign_in(&s, &base, "vera").await;
    s.click("[data-nav='/events']").await;
    s.find(&format!("#event-list li[data-seq='{earlier}']"))
        .await;
    s.wait_for(
        "the event socket",
        "return document.getElementById('event-live')?.dataset.state === 'online'",
        json!([]),
    )
    .await;
    s.js("window.__samePage = true", json!([])).await;

    // A device publishes: the row arrives over the socket, on the same page.
    let seq = publish(
        &server,
        &pump,
        json!({"source": "pump-7", "type": "pressure.high", "severity": "warning",
               "message": "Pump 7 pressure high", "attributes": {"bar": 7.5, "line": "L3"}}),
    )
    .await;
    s.find(&format!("#event-list li[data-seq='{seq}']")).await;
    assert_eq!(
        s.js("return window.__samePage === true", json!([])).await,
        true
    );
    let first = s
        .js(
            "return document.querySelector('#event-list li')?.dataset.seq",
            json!([]),
        )
        .await;
    assert_eq!(first, json!(seq.to_string()), "newest first");

    // The detail pane: seq and the chain hash, as the log holds them.
    s.click(&format!("#event-list li[data-seq='{seq}'] button"))
        .await;
    let hash = {
        let log = server.state().log();
        let rtx = log.read().unwrap();
        hex::encode(log.entry(&rtx, seq).unwrap().unwrap().hash)
    };
    s.wait_for(
        "the detail pane",
        "return document.getElementById('detail-seq')?.textContent === arguments[0]
             && document.getElementById('detail-hash')?.textContent === arguments[1]",
        json!([seq.to_string(), hash]),
    )
    .await;
    let detail = s
        .js(
            "return document.getElementById('event-detail').textContent",
            json!([]),
        )
        .await;
    let detail = detail.as_str().unwrap();
    assert!(
        detail.contains("bar") && detail.contains("7.5") && detail.contains("L3"),
        "{detail}"
    );
    s.screenshot(&shots.join("desktop-events.png")).await;

    // Filters narrow the list; the export links carry them.
    s.type_into("#event-filters input[name=source]", "valve-2")
        .await;
    s.click("#event-filters button[type=submit]").await;
    s.wait_for(
        "the filtered list",
        "const rows = [...document.querySelectorAll('#event-list li')].map(l => l.dataset.seq);
         return rows.length === 1 && rows[0] === arguments[0]",
        json!([earlier.to_string()]),
    )
    .await;
    let href = s
        .js(
            "return document.getElementById('export-csv').getAttribute('href')",
            json!([]),
        )
        .await;
    let href = href.as_str().unwrap();
    assert!(
        href.starts_with("/api/v1/events/export?")
            && href.contains("source=valve-2")
            && href.contains("format=csv"),
        "{href}"
    );
    s.js(
        "fetch(arguments[0]).then(r => r.text()).then(t => { window.__csv = t; })",
        json!([href]),
    )
    .await;
    let csv = s
        .wait_for("the export", "return window.__csv", json!([]))
        .await;
    let csv = csv.as_str().unwrap();
    assert!(
        csv.starts_with("seq,ts,") && csv.contains("valve-2") && !csv.contains("pump-7"),
        "{csv}"
    );

    // A phone: cards, no sideways scrolling, 44 px targets.
    s.click("#event-filters button[type=reset]").await;
    s.find(&format!("#event-list li[data-seq='{seq}']")).await;
    s.set_size(360, 740).await;
    let fits = s
        .js(
            "const b = document.querySelector('#event-list li button').getBoundingClientRect();
             return { overflow: document.documentElement.scrollWidth - window.innerWidth,
                      row_width: b.width, row_height: b.height,
                      csv_height: document.getElementById('export-csv').getBoundingClientRect().height }",
            json!([]),
        )
        .await;
    assert!(fits["overflow"].as_f64().unwrap() <= 0.0, "{fits}");
    assert!(fits["row_width"].as_f64().unwrap() <= 360.0, "{fits}");
    assert!(fits["row_height"].as_f64().unwrap() >= 44.0, "{fits}");
    assert!(fits["csv_height"].as_f64().unwrap() >= 44.0, "{fits}");
    s.screenshot(&shots.join("phone-events.png")).await;
    s.quit().await;
    server.stop().await;
}
