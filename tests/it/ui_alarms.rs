//! The alarm UI in a real headless Chromium: an alarm a device raises appears without a reload in
//! the banner of every page and in the summary, is acknowledged with a comment from the page and
//! the journal shows who; the summary of 1,200 alarms keeps few rows in the DOM and acks them
//! all; the KPI page draws its SVG charts for a scripted history.

use serde_json::json;

use std::collections::BTreeMap;

use plantwire::alarms::{Priority, Signal};
use plantwire::log::Author;

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

fn signal(source: &str, condition: &str, priority: Priority) -> Signal {
    Signal {
        source: source.to_string(),
        condition: condition.to_string(),
        active: true,
        priority: Some(priority),
        message: Some(format!("{condition} on {source}")),
        attributes: BTreeMap::new(),
        latched: None,
        suppressed: None,
    }
}

/// Raises `signals` in one commit, as device `plc-bulk`.
async fn raise_all(server: &TestServer, signals: Vec<Signal>) {
    let by = Author::device("plc-bulk");
    server
        .state()
        .log()
        .submit(move |tx| {
            for s in &signals {
                plantwire::alarms::apply_in_tx(tx, &by, s)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

/// The banner's `(top priority, unacknowledged, active, flashing)` as the page shows them.
const BANNER: &str = "const b = document.getElementById('alarm-banner');
    return b && [b.dataset.top, Number(b.dataset.unack), Number(b.dataset.active),
                 b.classList.contains('flash'), b.textContent]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_banner_on_the_chat_page_follows_device_alarms_live_also_on_a_phone() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("olga", Role::Operator, PW).await;
    let token = server.device("plc-9").await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    sign_in(&b, &base, "olga").await;
    assert_eq!(b.js("return location.pathname", json!([])).await, "/");
    b.wait_for(
        "the quiet banner",
        "const b = document.getElementById('alarm-banner');
         return b && b.dataset.top === 'none' && b.textContent.includes('No alarms')",
        json!([]),
    )
    .await;

    let raise = |cond: &str, prio: &str| json!({"source": "boiler-1", "condition": cond, "active": true, "priority": prio});
    let c = server.client();
    let r = c
        .with_bearer(
            hyper::Method::POST,
            "/api/v1/alarms",
            &token,
            Some(raise("drum.level.low", "high")),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let seen = b
        .wait_for(
            "the banner with one high alarm",
            "const b = document.getElementById('alarm-banner');
             return b && b.dataset.top === 'high' && b.dataset.unack === '1' && b.dataset.active === '1'",
            json!([]),
        )
        .await;
    assert_eq!(seen, true);
    let now = b.js(BANNER, json!([])).await;
    assert_eq!(now[3], true, "unacknowledged flashes: {now}");
    let text = now[4].as_str().unwrap();
    assert!(
        text.contains('▲') && text.contains("high") && text.contains("1/1"),
        "{text}"
    );

    // A critical one on top: two unacknowledged, critical is the highest.
    let r = c
        .with_bearer(
            hyper::Method::POST,
            "/api/v1/alarms",
            &token,
            Some(raise("flame.out", "critical")),
        )
        .await;
    assert_eq!(r.status, 201);
    let critical = r.json()["id"].as_u64().unwrap();
    b.wait_for(
        "critical on top",
        "const b = document.getElementById('alarm-banner');
         return b.dataset.top === 'critical' && b.dataset.unack === '2' && b.dataset.active === '2'
           && b.textContent.includes('◆') && b.textContent.includes('critical')",
        json!([]),
    )
    .await;
    // Acknowledged elsewhere: still active (counted, steady for it), one left unacknowledged.
    let olga = Api::login(&server.client(), "olga", PW).await;
    let ack = olga
        .post(&format!("/api/v1/alarms/{critical}/ack"), json!({}))
        .await;
    assert_eq!(ack.status, 200);
    b.wait_for(
        "one unacknowledged, two active",
        "const b = document.getElementById('alarm-banner');
         return b.dataset.top === 'critical' && b.dataset.unack === '1' && b.dataset.active === '2'",
        json!([]),
    )
    .await;

    // On a 360×740 phone the banner stays in view, one tap target high, and opens the summary.
    b.set_size(360, 740).await;
    let rect = b
        .wait_for(
            "the banner laid out on the phone",
            "const r = document.getElementById('alarm-banner').getBoundingClientRect();
             return r.width > 0 && r.right <= window.innerWidth && r.height >= 44 && r.height < 80
               && [r.width, r.height]",
            json!([]),
        )
        .await;
    assert!(rect.is_array(), "{rect}");
    b.screenshot(&shots_dir().join("phone-alarm-banner.png"))
        .await;
    b.click("#alarm-banner").await;
    b.wait_for(
        "the summary, opened from the banner",
        "return location.pathname === '/alarms' && !!document.querySelector('.screen.alarms tr.alarm')",
        json!([]),
    )
    .await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_summary_of_10000_alarms_keeps_the_dom_small_takes_a_live_burst_and_acks_everything_visible()
 {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("olga", Role::Operator, PW).await;
    let prios = [
        Priority::Critical,
        Priority::High,
        Priority::Medium,
        Priority::Low,
    ];
    let signals = (0..10_000)
        .map(|i| signal(&format!("line-{}", i % 40), &format!("c{i}"), prios[i % 4]))
        .collect();
    raise_all(&server, signals).await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    sign_in(&b, &base, "olga").await;
    b.click("[data-nav='/alarms']").await;
    b.wait_for(
        "10000 standing alarms listed",
        "const c = document.getElementById('alarm-count');
         return c && c.textContent.startsWith('10000 standing · 10000 unacknowledged')",
        json!([]),
    )
    .await;
    let rows = "return document.querySelectorAll('.screen.alarms tr.alarm').length";
    let first = b.js(rows, json!([])).await.as_u64().unwrap();
    assert!((5..=100).contains(&first), "{first} rows in the DOM");
    // Highest priority first.
    let top = b
        .js(
            "return document.querySelector('.screen.alarms tr.alarm').dataset.priority",
            json!([]),
        )
        .await;
    assert_eq!(top, "critical");

    // Scrolled to the middle: other rows, still few of them, and the low ones.
    b.js(
        "const s = document.querySelector('.vlist'); s.scrollTop = s.scrollHeight * 0.9; return 1",
        json!([]),
    )
    .await;
    b.wait_for(
        "low alarms rendered after scrolling",
        "return [...document.querySelectorAll('.screen.alarms tr.alarm')]
           .some(r => r.dataset.priority === 'low')",
        json!([]),
    )
    .await;
    let later = b.js(rows, json!([])).await.as_u64().unwrap();
    assert!((5..=100).contains(&later), "{later} rows in the DOM");

    b.type_into("input[aria-label='Comment']", "flood reviewed")
        .await;
    b.js(
        "[...document.querySelectorAll('.screen.alarms button')]
           .find(x => x.textContent === 'Ack visible').click(); return 1",
        json!([]),
    )
    .await;
    b.wait_for(
        "every alarm acknowledged on the page",
        "const c = document.getElementById('alarm-count');
         return c && c.textContent.startsWith('10000 standing · 0 unacknowledged')
           && document.querySelectorAll('.screen.alarms tr.alarm.unack').length === 0",
        json!([]),
    )
    .await;
    let olga = Api::login(&server.client(), "olga", PW).await;
    let left = olga.ok("/api/v1/alarms?state=unack").await;
    assert_eq!(left["alarms"].as_array().unwrap().len(), 0);
    let acked = olga.ok("/api/v1/alarms?state=acked").await;
    assert_eq!(acked["alarms"].as_array().unwrap().len(), 10_000);

    // A live burst while the page is open: 2,000 new alarms in one commit reach the summary
    // (redrawn per animation frame, not per entry) and the DOM stays small.
    let burst = (0..2000)
        .map(|i| signal("burst", &format!("b{i}"), Priority::High))
        .collect();
    raise_all(&server, burst).await;
    b.wait_for(
        "the live burst listed",
        "const c = document.getElementById('alarm-count');
         return c && c.textContent.startsWith('12000 standing · 2000 unacknowledged')",
        json!([]),
    )
    .await;
    let after = b.js(rows, json!([])).await.as_u64().unwrap();
    assert!((5..=100).contains(&after), "{after} rows in the DOM");
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_kpi_page_draws_its_svg_charts_for_a_scripted_history() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("olga", Role::Operator, PW).await;
    let now = server.state().log().now_us();
    // Four conditions on three sources: two high, one medium, one low; all within seconds.
    raise_all(
        &server,
        vec![
            signal("mill-1", "bearing.hot", Priority::High),
            signal("mill-1", "motor.trip", Priority::High),
            signal("mill-2", "lube.low", Priority::Medium),
            signal("mill-3", "door.open", Priority::Low),
        ],
    )
    .await;
    // Ten minutes before to fifty after: six 10-minute periods.
    let (since, until) = (now - 600_000_000, now + 3_000_000_000);
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    sign_in(&b, &base, "olga").await;
    b.goto(&format!("{base}/alarms/kpis?since={since}&until={until}"))
        .await;
    let counts = b
        .wait_for(
            "the three charts",
            "const n = (s) => document.querySelectorAll(s).length;
             return n('svg.chart') === 3 && n('svg.histogram') === 1
               && [n('svg.histogram rect.bar'), n('svg.bad-actors rect.bar'), n('svg.priority-mix rect.bar')]",
            json!([]),
        )
        .await;
    assert_eq!(counts, json!([6, 4, 3]));
    // The rate chart: the four in the second period, nothing elsewhere.
    let heights = b
        .js(
            "return [...document.querySelectorAll('svg.histogram rect.bar')]
               .map(r => Number(r.getAttribute('height')) > 0)",
            json!([]),
        )
        .await;
    assert_eq!(heights, json!([false, true, false, false, false, false]));
    // Accessible: each chart is an image with a title and a description giving its numbers.
    let a11y = b
        .js(
            "return [...document.querySelectorAll('svg.chart')].map(s => {
               const ids = s.getAttribute('aria-labelledby').split(' ');
               return s.getAttribute('role') + '|' + ids.map(i => document.getElementById(i).textContent).join('|');
             })",
            json!([]),
        )
        .await;
    let a11y: Vec<&str> = a11y
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        a11y[0].starts_with("img|Annunciated alarms per 10 minutes|6 periods"),
        "{a11y:?}"
    );
    assert!(a11y[1].starts_with("img|Top 10 bad actors|"), "{a11y:?}");
    assert!(a11y[2].contains("high 2, medium 1, low 1"), "{a11y:?}");
    let figures = b
        .js(
            "return document.querySelector('.kpi-figures').textContent",
            json!([]),
        )
        .await;
    assert!(
        figures
            .as_str()
            .unwrap()
            .contains("Standing / shelved now4 / 0"),
        "{figures}"
    );
    b.screenshot(&shots_dir().join("desktop-alarm-kpis.png"))
        .await;
    b.quit().await;
}
