//! A message's actions in a real headless Chromium, by pointer kind: with a mouse (Blink's pointer
//! settings, since headless reports `hover: none`) a toolbar on hover; on a phone the tap menu.

use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, sign_in, spki_hash, wait_online};
use crate::ui_chat_product::act;
use crate::webdriver::{Driver, MOUSE, Session, find_browser};
use plantwire::store::Role;

/// Marks the delivered message with this text (`data-test-msg`) once it is on the page (a
/// repaint of the list drops the mark).
async fn mark(s: &Session<'_>, text: &str) {
    s.wait_for(
        text,
        "document.querySelectorAll('[data-test-msg]').forEach(e => e.removeAttribute('data-test-msg'));
         const li = [...document.querySelectorAll('#messages .msg[data-seq]')]
           .find(l => l.querySelector('.text')?.textContent === arguments[0]);
         if (li) li.setAttribute('data-test-msg', '');
         return !!li",
        json!([text]),
    )
    .await;
}

/// The centre of the first element matching the selector, in CSS px of the viewport.
async fn centre(s: &Session<'_>, css: &str) -> (f64, f64) {
    let v = s
        .js(
            "const r = document.querySelector(arguments[0]).getBoundingClientRect();
             return [r.left + r.width / 2, r.top + r.height / 2]",
            json!([css]),
        )
        .await;
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

/// A real mouse event at a point (DevTools input, so `:hover` follows it).
async fn mouse(s: &Session<'_>, kind: &str, (x, y): (f64, f64)) {
    s.cdp(
        "Input.dispatchMouseEvent",
        json!({"type": kind, "x": x, "y": y,
               "button": if kind == "mouseMoved" { "none" } else { "left" },
               "buttons": if kind == "mousePressed" { 1 } else { 0 }, "clickCount": 1}),
    )
    .await;
}

/// The marked message's action buttons as drawn: `[displayed, [[w, h, label], …]]`.
async fn toolbar(s: &Session<'_>) -> Value {
    s.js(
        "const bar = document.querySelector('[data-test-msg] .actions');
         const shown = !!bar && getComputedStyle(bar).display !== 'none';
         const acts = shown ? [...bar.querySelectorAll('button.act')]
           .filter(b => getComputedStyle(b).display !== 'none')
           .map(b => { const r = b.getBoundingClientRect();
                       return [r.width, r.height, b.getAttribute('aria-label') || b.textContent.trim()]; }) : [];
         return [shown, acts, bar ? getComputedStyle(bar).position : null]",
        json!([]),
    )
    .await
}

/// Targets of the toolbar smaller than 44×44 CSS px.
fn small(bar: &Value) -> Vec<String> {
    bar[1]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|b| b[0].as_f64().unwrap_or(0.0) < 44.0 || b[1].as_f64().unwrap_or(0.0) < 44.0)
        .map(|b| b.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn a_mouse_gets_a_hover_toolbar_and_a_phone_the_tap_menu() {
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
    let group = alice.group("Hover", &["bob"]).await;
    bob.say(&group, "h1", "hover me").await;
    bob.say(&group, "h2", "tap me").await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver
        .session_with(&spki_hash(&server).await, &[MOUSE])
        .await;
    let mut failed: Vec<String> = Vec::new();

    // A desktop with a mouse.
    a.set_size(1280, 800).await;
    sign_in(&a, &base, "alice").await;
    a.goto(&format!("{base}/c/{group}")).await;
    wait_online(&a).await;
    let fine = a
        .js(
            "return matchMedia('(hover: hover) and (pointer: fine)').matches",
            json!([]),
        )
        .await;
    assert_eq!(fine, json!(true), "hover and a fine pointer are emulated");
    mark(&a, "hover me").await;
    mouse(&a, "mouseMoved", (5.0, 5.0)).await;
    let before = toolbar(&a).await;
    if before[0] != json!(false) {
        failed.push(format!("the toolbar shows before any hover: {before}"));
    }
    mouse(&a, "mouseMoved", centre(&a, "[data-test-msg] .text").await).await;
    let over = toolbar(&a).await;
    if over[0] != json!(true) || over[2] != json!("absolute") {
        failed.push(format!(
            "hovering the message shows no toolbar over it: {over}"
        ));
    }
    let n = over[1].as_array().map_or(0, Vec::len);
    if n < 5 {
        failed.push(format!(
            "{n} actions in the toolbar (reply, four reactions): {over}"
        ));
    }
    failed.extend(
        small(&over)
            .into_iter()
            .map(|b| format!("toolbar target under 44 px: {b}")),
    );
    // Its reaction button works with the mouse (pressed where the toolbar is).
    let thumbs = centre(&a, "[data-test-msg] .actions button[aria-label='React 👍']").await;
    mouse(&a, "mouseMoved", thumbs).await;
    mouse(&a, "mousePressed", thumbs).await;
    mouse(&a, "mouseReleased", thumbs).await;
    a.wait_for(
        "the reaction from the toolbar",
        "const li = [...document.querySelectorAll('#messages .msg[data-seq]')]
           .find(l => l.querySelector('.text')?.textContent === 'hover me');
         return !!li && !!li.querySelector('.reacts .react.mine')",
        json!([]),
    )
    .await;
    mark(&a, "hover me").await;
    mouse(&a, "mouseMoved", (5.0, 5.0)).await;
    let away = toolbar(&a).await;
    if away[0] != json!(false) {
        failed.push(format!("the toolbar stays after the mouse left: {away}"));
    }
    let opened = a
        .js(
            "return document.querySelectorAll('#messages .msg.open').length",
            json!([]),
        )
        .await;
    if opened != json!(0) {
        failed.push(format!("{opened} menus left open by the toolbar"));
    }

    // A phone (touch emulated; the media queries then say coarse, no hover): hovering does nothing, a tap opens the menu as a sheet, and its actions work.
    a.set_size(360, 740).await;
    mark(&a, "tap me").await;
    mouse(&a, "mouseMoved", centre(&a, "[data-test-msg] .text").await).await;
    let hovered = toolbar(&a).await;
    if hovered[0] != json!(false) {
        failed.push(format!("a phone shows the toolbar on hover: {hovered}"));
    }
    act(&a, "tap me", "React ✅").await;
    a.wait_for(
        "the reaction from the menu",
        "const li = [...document.querySelectorAll('#messages .msg[data-seq]')]
           .find(l => l.querySelector('.text')?.textContent === 'tap me');
         return !!li && !!li.querySelector('.reacts .react.mine')",
        json!([]),
    )
    .await;
    mark(&a, "tap me").await;
    a.click("[data-test-msg] .meta").await;
    let sheet = toolbar(&a).await;
    if sheet[0] != json!(true) || sheet[2] != json!("fixed") {
        failed.push(format!("a tap does not open the menu as a sheet: {sheet}"));
    }
    failed.extend(
        small(&sheet)
            .into_iter()
            .map(|b| format!("menu target under 44 px: {b}")),
    );
    a.quit().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
