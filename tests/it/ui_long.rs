//! Long and busy conversations in a real headless Chromium: 10,000 messages scrolled to the top
//! and back with a bounded DOM and the reader's place kept, and the issue-19 figures (time from
//! sign-in to the conversation list, JS heap after a simulated hour of a busy channel).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, sign_in, spki_hash, wait_online};
use crate::webdriver::{Driver, Session, find_browser};
use plantwire::chat::Actor;
use plantwire::chat::messages::{SendMessage, send};
use plantwire::clock::ManualClock;
use plantwire::store::Role;

/// The most message rows the conversation may hold in its DOM (`WINDOW` in `assets/js/chat.js`).
const WINDOW: u64 = 200;

/// Sends `texts` as `who` into `conv` through the chat domain in process (as the HTTP handler
/// does), 100 at a time so the sequencer commits them in groups.
async fn seed(server: &TestServer, who: &str, conv: &str, texts: &[String]) {
    let log = server.state().log();
    let cfg = &server.state().config().chat;
    let actor = Actor {
        user: who.to_string(),
        role: Role::Operator,
    };
    for (n, chunk) in texts.chunks(100).enumerate() {
        let sends = chunk.iter().enumerate().map(|(i, text)| {
            let msg = SendMessage {
                key: format!("seed-{conv}-{n}-{i}"),
                text: text.clone(),
                reply_to: None,
                attachments: Vec::new(),
            };
            send(log, cfg, &actor, conv, msg)
        });
        for r in join_all(sends).await {
            r.unwrap();
        }
    }
}

/// Waits until a delivered message with exactly this text is in the DOM.
async fn wait_message(b: &Session<'_>, text: &str) {
    b.wait_for(
        text,
        "return [...document.querySelectorAll('#messages .msg[data-seq] .text')]
           .some(e => e.textContent === arguments[0])",
        json!([text]),
    )
    .await;
}

/// Up to `steps` scrolls to the top (`up`) or the bottom of the message scroller, each followed
/// by waiting for the window to move. Before the window moves, the first message in view is
/// noted with its position; after, the step reports `[first seq, last seq, rows, px moved]`.
/// Stops early at the end (`"end"`) or when the window does not move within 5 s (`"stuck"`).
const STEPS: &str = r#"
const [dir, steps] = arguments;
const done = arguments[arguments.length - 1];
const sc = document.querySelector('.scroller');
const rows = () => document.querySelectorAll('#messages .msg[data-seq]');
const tick = () => new Promise((r) => setTimeout(r, 10));
const ends = () => {
  const r = rows();
  return [Number(r[0].dataset.seq), Number(r[r.length - 1].dataset.seq)];
};
(async () => {
  const out = [];
  for (let k = 0; k < steps; k++) {
    const [first0, last0] = ends();
    if (dir === 'up' && document.getElementById('older').hidden) { out.push('end'); break; }
    if (dir === 'down' && document.getElementById('jump-newest').hidden) { out.push('end'); break; }
    sc.scrollTop = dir === 'up' ? 0 : sc.scrollHeight;
    const top = sc.getBoundingClientRect().top;
    const a = [...rows()].find((li) => li.getBoundingClientRect().bottom > top);
    const seq = a.dataset.seq;
    const y = a.getBoundingClientRect().top;
    let moved = false;
    for (let t = 0; t < 500 && !moved; t++) {
      await tick();
      const [f, l] = ends();
      moved = dir === 'up' ? f < first0 : l > last0;
    }
    if (!moved) { out.push('stuck'); break; }
    await tick();
    const b = document.querySelector(`#messages .msg[data-seq="${seq}"]`);
    const [f, l] = ends();
    out.push([f, l, rows().length, b ? Math.abs(b.getBoundingClientRect().top - y) : null]);
  }
  done(out);
})();
"#;

/// Scrolls one way until the end, checking every step; returns the steps taken.
async fn scroll_through(s: &Session<'_>, dir: &str, failed: &mut Vec<String>) -> usize {
    let mut taken = 0;
    for _ in 0..60 {
        let out = s.js_async(STEPS, json!([dir, 10])).await;
        for step in out.as_array().cloned().unwrap_or_default() {
            match step {
                Value::String(end) if end == "end" => return taken,
                Value::String(other) => {
                    failed.push(format!(
                        "{dir}: the window did not move ({other}) after {taken} steps"
                    ));
                    return taken;
                }
                v => {
                    taken += 1;
                    let rows = v[2].as_u64().unwrap_or(u64::MAX);
                    if rows > WINDOW {
                        failed.push(format!("{dir} step {taken}: {rows} rows in the DOM ({v})"));
                    }
                    if v[3].as_f64().unwrap_or(f64::MAX) > 3.0 {
                        failed.push(format!(
                            "{dir} step {taken}: the message in view moved ({v})"
                        ));
                    }
                }
            }
        }
    }
    failed.push(format!("{dir}: no end after {taken} steps"));
    taken
}

/// The first and last drawn message's text, and how many rows are drawn.
async fn drawn(s: &Session<'_>) -> Value {
    s.js(
        "const r = document.querySelectorAll('#messages .msg[data-seq]');
         return [r[0].querySelector('.text').textContent,
                 r[r.length - 1].querySelector('.text').textContent, r.length]",
        json!([]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn ten_thousand_messages_keep_a_bounded_dom_both_ways_and_the_readers_place() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("alice", Role::Operator, PW).await;
    server.user("bob", Role::Operator, PW).await;
    let c = server.client();
    let alice = Api::login(&c, "alice", PW).await;
    let bob = Api::login(&c, "bob", PW).await;
    let group = alice.group("Long", &["bob"]).await;
    let texts: Vec<String> = (1..=10_000).map(|i| format!("long {i}")).collect();
    seed(&server, "bob", &group, &texts).await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki_hash(&server).await).await;
    a.set_size(1280, 800).await;
    let mut failed: Vec<String> = Vec::new();
    sign_in(&a, &base, "alice").await;
    a.goto(&format!("{base}/c/{group}")).await;
    wait_online(&a).await;
    wait_message(&a, "long 10000").await;

    // To the very top: every page of 50 comes in, the newest rows leave, the place is kept.
    let up = scroll_through(&a, "up", &mut failed).await;
    let top = drawn(&a).await;
    if top[0] != json!("long 1") || top[2].as_u64().unwrap_or(u64::MAX) > WINDOW {
        failed.push(format!("at the top after {up} steps: {top}"));
    }
    // And back down to the newest: the oldest rows leave, the place is kept.
    let down = scroll_through(&a, "down", &mut failed).await;
    let bottom = drawn(&a).await;
    if bottom[1] != json!("long 10000") || bottom[2].as_u64().unwrap_or(u64::MAX) > WINDOW {
        failed.push(format!("at the bottom after {down} steps: {bottom}"));
    }
    // A few steps back, then "Jump to newest": the newest is drawn, at the bottom, and a new
    // message arrives live into a window that is still bounded.
    let out = a.js_async(STEPS, json!(["up", 12])).await;
    if out.as_array().is_none_or(|v| v.len() < 12) {
        failed.push(format!("scrolling back again: {out}"));
    }
    let back = drawn(&a).await;
    if back[1] == json!("long 10000") {
        failed.push(format!("12 steps up still draws the newest: {back}"));
    }
    a.click("#jump-newest").await;
    wait_message(&a, "long 10000").await;
    bob.say(&group, "k10001", "long 10001").await;
    wait_message(&a, "long 10001").await;
    let end = a
        .js(
            "const s = document.querySelector('.scroller');
             return [s.scrollHeight - s.scrollTop - s.clientHeight,
                     document.querySelectorAll('#messages .msg[data-seq]').length,
                     document.getElementById('jump-newest').hidden]",
            json!([]),
        )
        .await;
    if end[0].as_f64().unwrap_or(f64::MAX) > 2.0
        || end[1].as_u64().unwrap_or(u64::MAX) > WINDOW
        || end[2] != json!(true)
    {
        failed.push(format!(
            "after Jump to newest: [px from the bottom, rows, button hidden] = {end}"
        ));
    }
    println!("10,000 messages: {up} steps up, {down} steps down, at most {WINDOW} rows");
    a.quit().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Records, from the sign-in form's submit, when the conversation list first holds a
/// conversation (`window.__pwT = {submit, list}`, performance.now() ms).
const TIME_LIST: &str = r#"
window.__pwT = {};
document.getElementById('login-form')
  .addEventListener('submit', () => { window.__pwT.submit = performance.now(); }, true);
new MutationObserver((_, o) => {
  if (window.__pwT.submit !== undefined && document.querySelector('#conv-list .conv-item')) {
    window.__pwT.list = performance.now();
    o.disconnect();
  }
}).observe(document.documentElement, { childList: true, subtree: true });
return true;
"#;

/// The page's JS heap after a full garbage collection, in bytes (DevTools `Runtime.getHeapUsage`).
async fn heap_used(s: &Session<'_>) -> f64 {
    s.cdp("HeapProfiler.collectGarbage", json!({})).await;
    let v = s.cdp("Runtime.getHeapUsage", json!({})).await;
    v["usedSize"].as_f64().unwrap_or(f64::MAX)
}

/// The issue-19 figures, printed (times are measured, never asserted): sign-in to the first
/// conversation in the list, three fresh browsers; and the JS heap of a page that had a busy
/// channel open for a simulated hour (3,600 messages live, one per second of the server's clock,
/// and 300 more in other conversations). Asserted: the DOM and the heap stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn figures_time_to_the_conversation_list_and_the_heap_after_a_busy_hour() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let now_us = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(now_us));
    let server =
        TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |_| {}).await;
    server.user("alice", Role::Operator, PW).await;
    server.user("bob", Role::Operator, PW).await;
    server.user("carol", Role::Operator, PW).await;
    let c = server.client();
    let alice = Api::login(&c, "alice", PW).await;
    let busy = alice.group("Busy", &["bob", "carol"]).await;
    // Thirty other conversations with twenty messages each: the list has something to draw.
    let mut others = Vec::new();
    for i in 0..30 {
        let g = alice.group(&format!("Shift {i}"), &["carol"]).await;
        let texts: Vec<String> = (0..20).map(|n| format!("shift {i} note {n}")).collect();
        seed(&server, "carol", &g, &texts).await;
        others.push(g);
    }
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let spki = spki_hash(&server).await;

    let mut list_ms = Vec::new();
    for _ in 0..3 {
        let s = driver.session(&spki).await;
        s.set_size(1280, 800).await;
        s.goto(&format!("{base}/")).await;
        s.type_into("#login-form input[name=username]", "alice")
            .await;
        s.type_into("#login-form input[name=password]", PW).await;
        s.js(TIME_LIST, json!([])).await;
        s.click("#login-form button[type=submit]").await;
        let t = s
            .wait_for(
                "the conversation list",
                "const t = window.__pwT; return t && t.list !== undefined && [t.submit, t.list]",
                json!([]),
            )
            .await;
        list_ms.push(t[1].as_f64().unwrap_or(f64::NAN) - t[0].as_f64().unwrap_or(f64::NAN));
        s.quit().await;
    }

    let s = driver.session(&spki).await;
    s.set_size(1280, 800).await;
    sign_in(&s, &base, "alice").await;
    s.goto(&format!("{base}/c/{busy}")).await;
    wait_online(&s).await;
    let start = heap_used(&s).await;
    let bob = Actor {
        user: "bob".into(),
        role: Role::Operator,
    };
    let carol = Actor {
        user: "carol".into(),
        role: Role::Operator,
    };
    let log = server.state().log();
    let cfg = &server.state().config().chat;
    let mut quarter = f64::NAN;
    for second in 1..=3600 {
        clock.advance_us(1_000_000);
        if second == 901 {
            // A quarter of an hour in, once the page has drawn it: the heap from here on is the
            // steady state (kept in the model, the rest of the hour added 0.54 MiB when tried).
            wait_message(&s, "pump 4 pressure 3 bar at second 900").await;
            quarter = heap_used(&s).await;
        }
        let msg = |key: String, text: String| SendMessage {
            key,
            text,
            reply_to: None,
            attachments: Vec::new(),
        };
        let text = format!(
            "pump {} pressure {} bar at second {second}",
            second % 7,
            3 + second % 5
        );
        send(log, cfg, &bob, &busy, msg(format!("busy{second}"), text))
            .await
            .unwrap();
        if second % 12 == 0 {
            let conv = &others[second % others.len()];
            send(
                log,
                cfg,
                &carol,
                conv,
                msg(format!("other{second}"), format!("other {second}")),
            )
            .await
            .unwrap();
        }
    }
    // The page may still be working through the hour's frames: up to ten minutes.
    let last = "pump 2 pressure 3 bar at second 3600";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while s
        .js(
            "return [...document.querySelectorAll('#messages .msg[data-seq] .text')]
               .some(e => e.textContent === arguments[0])",
            json!([last]),
        )
        .await
        != json!(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the hour's last message never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let end = heap_used(&s).await;
    let dom = s
        .js(
            "return [document.querySelectorAll('#messages .msg[data-seq]').length,
                     document.getElementsByTagName('*').length]",
            json!([]),
        )
        .await;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "FIGURE sign-in to conversation list (31 conversations): {:.0} ms, {:.0} ms, {:.0} ms",
        list_ms[0], list_ms[1], list_ms[2]
    );
    println!(
        "FIGURE JS heap with the busy channel open: {:.2} MiB at the start, {:.2} MiB after 3,600 \
         live messages (+300 elsewhere), {:.2} MiB after the first 900; {} message rows, {} \
         elements",
        mib(start),
        mib(end),
        mib(quarter),
        dom[0],
        dom[1]
    );
    s.quit().await;
    assert!(
        dom[0].as_u64().unwrap_or(u64::MAX) <= WINDOW,
        "message rows after the hour: {dom}"
    );
    assert!(
        end < quarter + 0.35 * 1024.0 * 1024.0,
        "the heap grew from {:.2} MiB at a quarter of the hour to {:.2} MiB at its end",
        mib(quarter),
        mib(end)
    );
}
