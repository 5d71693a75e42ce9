//! Alarm annunciation in a real headless Chromium: a new high alarm arriving live gives one
//! notification through the service worker and one Web Audio tone; a low one (below the default
//! minimum) neither; with "Alarm sound" switched off on the Me page a new high alarm notifies
//! without a tone.

use serde_json::{Value, json};

use crate::chat_support::PW;
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, shots_dir, sign_in, spki_hash};
use crate::webdriver::{Driver, Session, find_browser};
use plantwire::store::Role;

/// Records what the page shows through the service worker (the hook the chat notification test
/// uses: `registration.showNotification`, then the real call) and replaces `AudioContext`:
/// `window.__notes` gets `{title, body, path, worker}` per notification shown, `window.__tones`
/// one per tone started. A `new Notification()` from the page is not recorded (phones refuse it).
const STUBS: &str = "
    window.__notes = []; window.__tones = 0;
    const orig = ServiceWorkerRegistration.prototype.showNotification;
    ServiceWorkerRegistration.prototype.showNotification = function (title, o) {
      return orig.call(this, title, o).then((v) => {
        window.__notes.push({ title, body: o.body, path: o.data && o.data.path, sticky: !!o.requireInteraction, worker: !!this.active });
        return v; });
    };
    const param = () => ({ setValueAtTime() {}, linearRampToValueAtTime() {}, exponentialRampToValueAtTime() {} });
    class A {
      constructor() { this.state = 'running'; this.currentTime = 0; this.destination = {}; }
      resume() { return Promise.resolve(); }
      createOscillator() { return { type: '', frequency: param(), connect() {}, start() { window.__tones += 1; }, stop() {} }; }
      createGain() { return { gain: param(), connect() {} }; }
    }
    window.AudioContext = A; window.webkitAudioContext = A;
    return true";

/// `[notifications, tones]` recorded so far.
async fn recorded(b: &Session<'_>) -> (Value, u64) {
    let v = b
        .js("return [window.__notes, window.__tones]", json!([]))
        .await;
    (v[0].clone(), v[1].as_u64().unwrap())
}

async fn raise(server: &TestServer, token: &str, condition: &str, priority: &str) -> u64 {
    let r = server
        .client()
        .with_bearer(
            hyper::Method::POST,
            "/api/v1/alarms",
            token,
            Some(
                json!({"source": "boiler-1", "condition": condition, "active": true,
                        "priority": priority, "message": format!("{condition} tripped")}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.json()["id"].as_u64().unwrap()
}

/// Waits until the banner counts `n` active alarms (so the entry has reached the page).
async fn banner_active(b: &Session<'_>, n: u64) {
    b.wait_for(
        "the banner count",
        "const e = document.getElementById('alarm-banner'); return e && Number(e.dataset.active) === arguments[0]",
        json!([n]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn a_new_high_alarm_notifies_and_sounds_a_low_one_does_not_and_the_sound_can_be_switched_off()
{
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("olga", Role::Operator, PW).await;
    let token = server.device("plc-7").await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    // Permission granted the way a user would (the browser's permission store), and the page
    // controlled by its worker before anything is raised.
    b.cdp(
        "Browser.grantPermissions",
        json!({"origin": base, "permissions": ["notifications"]}),
    )
    .await;
    sign_in(&b, &base, "olga").await;
    b.wait_for(
        "the worker controls the page",
        "return !!navigator.serviceWorker.controller",
        json!([]),
    )
    .await;
    assert_eq!(b.js(STUBS, json!([])).await, json!(true));

    // A high alarm: one notification with priority, source, condition and message; one tone.
    raise(&server, &token, "pressure.high", "high").await;
    b.wait_for(
        "one notification",
        "return window.__notes.length === 1",
        json!([]),
    )
    .await;
    let (notes, tones) = recorded(&b).await;
    assert_eq!(tones, 1, "one tone for one new high alarm");
    let title = notes[0]["title"].as_str().unwrap();
    let body = notes[0]["body"].as_str().unwrap();
    assert!(
        title.contains("HIGH") && title.contains("boiler-1"),
        "{title}"
    );
    assert!(
        body.contains("pressure.high") && body.contains("pressure.high tripped"),
        "{body}"
    );
    assert_eq!(
        (&notes[0]["path"], &notes[0]["sticky"], &notes[0]["worker"]),
        (&json!("/alarms"), &json!(true), &json!(true)),
        "{notes}"
    );

    // A low alarm is below the default minimum (high): it reaches the page, but stays quiet.
    raise(&server, &token, "level.low", "low").await;
    banner_active(&b, 2).await;
    let (notes, tones) = recorded(&b).await;
    assert_eq!((notes.as_array().unwrap().len(), tones), (1, 1), "{notes}");

    // Clicking the notification: the worker posts its path to the page (sw.js
    // `notificationclick`), which opens the alarm summary.
    b.js(
        "navigator.serviceWorker.dispatchEvent(new MessageEvent('message', { data: { go: '/alarms' } })); return true",
        json!([]),
    )
    .await;
    b.wait_for(
        "the alarm summary",
        "return location.pathname === '/alarms' && !!document.querySelector('.screen.alarms')",
        json!([]),
    )
    .await;

    // The sound switched off on the Me page (kept in localStorage): a notification, no tone.
    b.click("[data-nav='/profile']").await;
    b.find("#alarm-sound").await;
    assert_eq!(
        b.js(
            "const s = document.getElementById('alarm-sound');
             return [s.checked, document.getElementById('alarm-min-priority').value]",
            json!([])
        )
        .await,
        json!([true, "high"])
    );
    let sizes = b
        .js(
            "return ['label.hit[for=alarm-sound]', '#alarm-min-priority'].map(s => {
               const r = document.querySelector(s).getBoundingClientRect();
               return Math.min(r.width, r.height); })",
            json!([]),
        )
        .await;
    for s in sizes.as_array().unwrap() {
        assert!(s.as_f64().unwrap() >= 44.0, "touch target {sizes}");
    }
    b.screenshot(&shots_dir().join("desktop-alarm-settings.png"))
        .await;
    b.click("label.hit[for='alarm-sound']").await;
    assert_eq!(
        b.js(
            "return localStorage.getItem('plantwire.alarm.sound.olga')",
            json!([])
        )
        .await,
        json!("off")
    );
    raise(&server, &token, "temperature.high", "critical").await;
    b.wait_for(
        "a second notification",
        "return window.__notes.length === 2",
        json!([]),
    )
    .await;
    banner_active(&b, 3).await;
    let (notes, tones) = recorded(&b).await;
    assert_eq!(tones, 1, "no tone with the sound off");
    assert!(
        notes[1]["title"].as_str().unwrap().contains("CRITICAL"),
        "{notes}"
    );
    b.quit().await;
}
