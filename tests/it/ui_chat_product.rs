//! The chat screens' issue-19 defects in a real headless Chromium: the reply bar, tofu glyphs,
//! 44 px targets and six messages on a phone, viewers, the channel slug, dark contrast and the theme
//! toggle, true-size screenshots, the service worker's notifications and unread title, the live
//! region of new messages, the desktop keys (Up edits, Esc cancels, Alt+Up/Down switch) and the
//! "New messages" marker with its jump button, initials avatars, the empty states, the people
//! directory and the admin's badge of pending registrations (long conversations: `ui_long.rs`).

use std::path::Path;

use serde_json::json;

use crate::chat_support::{Api, PW};
use crate::support::TestServer;
use crate::ui::{BROWSER, origin, shots_dir, sign_in, spki_hash, wait_online};
use crate::webdriver::{Driver, ENTER, Session, find_browser};
use plantwire::store::Role;

/// Waits until a delivered message with exactly this text is on the page.
async fn wait_message(b: &Session<'_>, text: &str) {
    b.wait_for(
        text,
        "return [...document.querySelectorAll('#messages .msg[data-seq] .text')]
           .some(e => e.textContent === arguments[0])",
        json!([text]),
    )
    .await;
}

/// Opens the action menu of the delivered message with this text (a tap on the message) and
/// clicks the action with this label or aria-label.
pub(crate) async fn act(s: &Session<'_>, text: &str, label: &str) {
    open_menu(s, text).await;
    s.click_found(
        label,
        "const li = [...document.querySelectorAll('#messages .msg[data-seq]')]
           .find(l => l.querySelector('.text')?.textContent === arguments[0]);
         return li && [...li.querySelectorAll('.actions button')]
           .find(x => x.textContent.trim() === arguments[1] || x.getAttribute('aria-label') === arguments[1]);",
        json!([text, label]),
    )
    .await;
}

/// Taps the delivered message with this text (its menu opens).
async fn open_menu(s: &Session<'_>, text: &str) {
    s.click_found(
        "the message",
        "const li = [...document.querySelectorAll('#messages .msg[data-seq]')]
           .find(l => l.querySelector('.text')?.textContent === arguments[0]);
         return li && li.querySelector('.meta')",
        json!([text]),
    )
    .await;
}

/// Every visible character outside ASCII under `#root` that draws exactly like a character no
/// font has (the "tofu" box), measured by drawing both on a canvas in the element's own font.
const TOFU: &str = "
    const cv = document.createElement('canvas'); cv.width = 64; cv.height = 64;
    const g = cv.getContext('2d', { willReadFrequently: true });
    const draw = (ch, font) => { g.clearRect(0, 0, 64, 64); g.font = font; g.fillStyle = '#000';
      g.textBaseline = 'top'; g.fillText(ch, 4, 4); return g.getImageData(0, 0, 64, 64).data.join(','); };
    const out = new Set();
    const walk = document.createTreeWalker(document.getElementById('root'), NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const el = n.parentElement;
      if (!el || !el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
      const font = getComputedStyle(el).font;
      const none = draw('\\u{10FFFD}', font);
      for (const ch of n.textContent) {
        if (ch.codePointAt(0) < 128 || /\\s/.test(ch)) continue;
        if (draw(ch, font) === none) out.add(ch);
      }
    }
    return [...out];";

/// Interactive elements in the open conversation (visible ones) smaller than 44×44 CSS px.
const SMALL_TARGETS: &str = "
    const sel = 'button, a[href], input:not([type=hidden]), textarea, select, summary, [tabindex]';
    return [...document.querySelectorAll('.conversation ' + sel.split(', ').join(', .conversation '))]
      .filter(e => !e.closest('.text'))
      .filter(e => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden')
      .map(e => [e, e.getBoundingClientRect()])
      .filter(([, r]) => r.width < 44 || r.height < 44)
      .map(([e, r]) => `${e.tagName.toLowerCase()}.${e.className} '${(e.getAttribute('aria-label') || e.textContent).trim().slice(0, 20)}' ${Math.round(r.width)}x${Math.round(r.height)}`);";

/// How many delivered messages are wholly inside the message scroller's visible box.
const VISIBLE_MESSAGES: &str = "
    const sc = document.querySelector('.scroller'); sc.scrollTop = sc.scrollHeight;
    const box = sc.getBoundingClientRect();
    return [...document.querySelectorAll('#messages .msg[data-seq]')].filter(m => {
      const r = m.getBoundingClientRect(); return r.top >= box.top - 1 && r.bottom <= box.bottom + 1; }).length;";

/// WCAG contrast of the first element matching the selector: its colour on its background (the
/// nearest ancestor with an opaque one).
const CONTRAST: &str = "
    const el = document.querySelector(arguments[0]);
    if (!el) return 0;
    const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
    const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
    let bg = null;
    for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length < 4 || c[3] > 0) { bg = c; break; } }
    bg = bg || [255, 255, 255];
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg);
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);";

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn reply_bar_glyphs_phone_targets_viewer_channel_slug_and_dark_contrast() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("alice", Role::Operator, PW).await;
    server.user("bob", Role::Operator, PW).await;
    server.user("vera", Role::Viewer, PW).await;
    server.user("dave", Role::Operator, PW).await;
    let c = server.client();
    let alice = Api::login(&c, "alice", PW).await;
    let bob = Api::login(&c, "bob", PW).await;
    let group = alice.group("Line 3", &["bob", "vera"]).await;
    let files = alice.group("Files", &["bob"]).await;
    let other = bob.group("Shift", &["alice"]).await;
    for i in 1..=10 {
        bob.say(&group, &format!("k{i}"), &format!("line {i}"))
            .await;
    }
    let base = origin(&server);
    let spki = spki_hash(&server).await;
    let shots = shots_dir();
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki).await;
    let mut failed: Vec<String> = Vec::new();

    // Screenshots are the true viewport: 1280×800 on the desktop.
    a.goto(&format!("{base}/")).await;
    a.find("#login-form").await;
    let shot = shots.join("desktop-sign-in.png");
    a.screenshot(&shot).await;
    if png_size(&shot) != (1280, 800) {
        failed.push(format!("desktop screenshot is {:?}", png_size(&shot)));
    }
    sign_in(&a, &base, "alice").await;

    // 1. Reply, then send another: the bar is gone and the second message is no reply.
    a.goto(&format!("{base}/c/{group}")).await;
    wait_online(&a).await;
    wait_message(&a, "line 10").await;
    act(&a, "line 10", "Reply").await;
    a.type_into("#composer", "with reply").await;
    a.type_into("#composer", ENTER).await;
    wait_message(&a, "with reply").await;
    a.type_into("#composer", "no reply").await;
    a.type_into("#composer", ENTER).await;
    wait_message(&a, "no reply").await;
    let bar = a
        .js(
            "const b = document.querySelector('.reply-bar'); return !!b && b.getClientRects().length > 0",
            json!([]),
        )
        .await;
    if bar != json!(false) {
        failed.push("the reply bar is still shown after the reply went out".into());
    }
    let shown_hidden = a
        .js(
            "return [...document.querySelectorAll('[hidden]')].filter(e => getComputedStyle(e).display !== 'none').map(e => e.className)",
            json!([]),
        )
        .await;
    if shown_hidden != json!([]) {
        failed.push(format!(
            "elements with `hidden` still displayed: {shown_hidden}"
        ));
    }
    let h = alice.history(&group, "").await;
    let reply_of = |t: &str| {
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["text"] == t)
            .map(|m| m["reply_to"].clone())
            .unwrap()
    };
    assert!(reply_of("with reply").is_u64(), "{h}");
    if !reply_of("no reply").is_null() {
        failed.push(format!(
            "the second message went out as a reply: {}",
            reply_of("no reply")
        ));
    }

    // The conversation header: members, invite, rename (leave comes last).
    a.click(".conv-details summary").await;
    let members = "return [...document.querySelectorAll('#members li')].map(l => l.textContent.trim()).sort().join(',')";
    a.wait_for(
        "the members",
        &format!("{members} === 'alice,bob,vera'"),
        json!([]),
    )
    .await;
    a.type_into("#invite-users", "dave").await;
    a.click("#invite-users + button").await;
    a.wait_for(
        "dave invited",
        &format!("{members} === 'alice,bob,dave,vera'"),
        json!([]),
    )
    .await;
    a.js(
        "document.getElementById('conv-rename').value = ''",
        json!([]),
    )
    .await;
    a.type_into("#conv-rename", "Line 3 east").await;
    a.click("#conv-rename + button").await;
    a.wait_for(
        "the new name",
        "return document.querySelector('.conv-title').textContent === 'Line 3 east'",
        json!([]),
    )
    .await;
    a.click(".conv-details summary").await;

    // 2. No tofu: a reaction, the action menu's glyphs and an attachment-only message (📎).
    act(&a, "line 9", "React 👍").await;
    a.wait_for(
        "the reaction",
        "return !!document.querySelector('#messages .react')",
        json!([]),
    )
    .await;
    a.goto(&format!("{base}/c/{files}")).await;
    wait_online(&a).await;
    let dir = tempfile::TempDir::new().unwrap();
    let txt = dir.path().join("shift-notes.txt");
    std::fs::write(&txt, "pump 2 noisy").unwrap();
    a.type_into("#file-input", txt.to_str().unwrap()).await;
    a.wait_for(
        "upload done",
        "return document.querySelector('.tray .upload button')",
        json!([]),
    )
    .await;
    a.type_into("#composer", ENTER).await;
    a.find("#messages .msg[data-seq] .attachment").await;
    a.goto(&format!("{base}/c/{group}")).await;
    wait_message(&a, "line 9").await;
    a.find("#conv-list .conv-item").await;
    open_menu(&a, "line 9").await; // its glyphs on screen too
    let tofu = a.js(TOFU, json!([])).await;
    if tofu != json!([]) {
        failed.push(format!("characters drawn as tofu: {tofu}"));
    }
    let svg = a
        .js(
            "return [...document.querySelectorAll('#messages .react')].every(r => r.querySelector('svg'))",
            json!([]),
        )
        .await;
    if svg != json!(true) {
        failed.push("a reaction chip has no SVG glyph".into());
    }

    // 3. A 360×740 touch phone: every target at least 44×44, at least six one-line messages.
    a.set_size(360, 740).await;
    a.goto(&format!("{base}/c/{group}")).await;
    wait_online(&a).await;
    wait_message(&a, "no reply").await;
    a.screenshot(&shots.join("phone-notify-ask.png")).await;
    // The first sign-in's notification card, answered "Not now".
    a.js(
        "document.querySelector('#notify-ask button:not(.primary)')?.click()",
        json!([]),
    )
    .await;
    let small = a.js(SMALL_TARGETS, json!([])).await;
    if small != json!([]) {
        failed.push(format!("phone targets under 44 px: {small}"));
    }
    let fit = a.js(VISIBLE_MESSAGES, json!([])).await;
    if fit.as_u64().unwrap_or(0) < 6 {
        failed.push(format!("only {fit} messages fit on a 360×740 phone"));
    }
    // One "Today" separator; bob's consecutive lines grouped under the first.
    let days = a
        .js(
            "return [[...document.querySelectorAll('#messages .day-sep')].map(e => e.textContent),
                     document.querySelectorAll('#messages .msg.grouped').length]",
            json!([]),
        )
        .await;
    if days[0] != json!(["Today"]) || days[1].as_u64().unwrap_or(0) < 9 {
        failed.push(format!("day separators / grouping: {days}"));
    }
    let shot = shots.join("phone-conversation.png");
    a.screenshot(&shot).await;
    if png_size(&shot) != (360, 740) {
        failed.push(format!("phone screenshot is {:?}", png_size(&shot)));
    }
    let bar = a
        .js(
            "return document.querySelector('header.bar').getBoundingClientRect().height",
            json!([]),
        )
        .await;
    if bar.as_f64().unwrap_or(999.0) > 110.0 {
        failed.push(format!("the phone header takes {bar} px of 740"));
    }
    // On a touch keyboard Enter is a new line; the Send button sends.
    a.type_into("#composer", "two").await;
    a.type_into("#composer", ENTER).await;
    a.type_into("#composer", "lines").await;
    let typed = a
        .js(
            "return document.getElementById('composer').value",
            json!([]),
        )
        .await;
    if typed != json!("two\nlines") {
        failed.push(format!(
            "Enter on a phone did not insert a newline: {typed}"
        ));
    }
    a.click(".composer button[type=submit]").await;
    if typed == json!("two\nlines") {
        wait_message(&a, "two\nlines").await;
    }
    open_menu(&a, "line 8").await;
    let small = a.js(SMALL_TARGETS, json!([])).await;
    if small != json!([]) {
        failed.push(format!("phone menu targets under 44 px: {small}"));
    }
    a.screenshot(&shots.join("phone-message-menu.png")).await;
    a.set_size(1280, 800).await;

    // 5. The channel name: no invalid pattern in the console, "Line 3" shown as `line-3`.
    a.console_log().await;
    a.goto(&format!("{base}/channels")).await;
    wait_online(&a).await;
    a.type_into("#channel-name", "Line 3").await;
    let slug = a
        .js(
            "const s = document.getElementById('channel-slug'); return [document.getElementById('channel-name').value, s ? s.textContent : '']",
            json!([]),
        )
        .await;
    let valid = a
        .js(
            "try { new RegExp(document.getElementById('channel-name').pattern, 'v'); return true } catch (e) { return String(e) }",
            json!([]),
        )
        .await;
    if valid != json!(true) {
        failed.push(format!(
            "the channel name pattern is invalid under the v flag: {valid}"
        ));
    }
    if !slug.to_string().contains("line-3") {
        failed.push(format!("no slug `line-3` shown for \"Line 3\": {slug}"));
    }
    let errors: Vec<_> = a
        .console_log()
        .await
        .into_iter()
        .filter(|(level, m)| level == "SEVERE" || m.contains("pattern"))
        .collect();
    if !errors.is_empty() {
        failed.push(format!("console errors on the channels screen: {errors:?}"));
    }

    // 6. Dark mode: the @mention chip and the red badge at least 4.5:1; the toggle overrides
    // the system and is kept.
    bob.say(&other, "m1", "@alice the pump").await;
    bob.say(&group, "m2", "@alice look").await;
    a.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    a.goto(&format!("{base}/c/{group}")).await;
    wait_message(&a, "@alice look").await;
    a.find(&format!(".conv-item[data-id='{other}'] .badge.mention"))
        .await;
    for sel in ["#messages .mention.me", ".badge.mention", ".badge.unread"] {
        let r = a.js(CONTRAST, json!([sel])).await.as_f64().unwrap();
        if r < 4.5 {
            failed.push(format!("dark contrast of {sel} is {r:.2}:1"));
        }
    }
    a.screenshot(&shots.join("desktop-dark-conversation.png"))
        .await;
    let light_bg = "const c = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number); return c[0] > 200";
    a.goto(&format!("{base}/profile")).await;
    a.find("input[name=theme][value=light]").await;
    let toggled = a
        .js(
            "const r = document.querySelector('input[name=theme][value=light]'); if (r) r.click(); return !!r",
            json!([]),
        )
        .await;
    a.goto(&format!("{base}/")).await;
    wait_online(&a).await;
    if toggled != json!(true) || a.js(light_bg, json!([])).await != json!(true) {
        failed.push("no theme toggle, or light was not kept over a dark system".into());
    }

    // 4. A viewer reads with a notice and has no composer.
    let v = driver.session(&spki).await;
    sign_in(&v, &base, "vera").await;
    v.goto(&format!("{base}/c/{group}")).await;
    wait_online(&v).await;
    wait_message(&v, "line 1").await;
    let viewer = v
        .js(
            "const c = document.getElementById('composer');
             return [!!c && c.getClientRects().length > 0, document.querySelector('.read-only')?.textContent || '']",
            json!([]),
        )
        .await;
    if viewer[0] != json!(false) || viewer[1].as_str().unwrap_or("").is_empty() {
        failed.push(format!(
            "a viewer gets a composer or no read-only notice: {viewer}"
        ));
    }
    v.screenshot(&shots.join("desktop-viewer.png")).await;

    // Leaving from the header: back to the list, the conversation gone from it.
    a.goto(&format!("{base}/c/{group}")).await;
    wait_online(&a).await;
    a.click(".conv-details summary").await;
    a.click("#conv-leave").await;
    a.accept_alert().await;
    a.wait_for(
        "left",
        "return location.pathname === '/' && !document.querySelector(`.conv-item[data-id='${arguments[0]}']`)",
        json!([group]),
    )
    .await;

    a.quit().await;
    v.quit().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_service_worker_shows_a_mention_while_hidden_and_the_title_counts_unread() {
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
    let group = alice.group("Line 3", &["bob"]).await;
    let base = origin(&server);

    // The worker script: same origin, JavaScript, revalidated every time, never under /api/.
    let sw = c.get("/sw.js").await;
    assert_eq!(sw.status, 200);
    let header = |n: &str| {
        sw.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(header("content-type").starts_with("text/javascript"));
    assert_eq!(header("cache-control"), "no-cache");

    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki_hash(&server).await).await;
    a.goto(&format!("{base}/")).await;
    a.js("localStorage.clear()", json!([])).await;
    sign_in(&a, &base, "alice").await;

    // First sign-in: the explanation and the button that asks for permission (granted here the
    // way a user would, through the browser's permission store).
    a.find("#notify-ask").await;
    a.cdp(
        "Browser.grantPermissions",
        json!({"origin": base, "permissions": ["notifications"]}),
    )
    .await;
    a.screenshot(&shots_dir().join("desktop-notify-ask.png"))
        .await;
    a.click("#notify-ask button.primary").await;
    let scope = a
        .js_async(
            "const done = arguments[0];
             navigator.serviceWorker.ready.then(r => done(r.scope), e => done('error ' + e))",
            json!([]),
        )
        .await;
    assert_eq!(scope, json!(format!("{base}/")));
    a.wait_for(
        "the worker controls the page",
        "return !!navigator.serviceWorker.controller",
        json!([]),
    )
    .await;
    wait_online(&a).await;

    // The page goes to the background; bob mentions alice.
    a.js(
        "Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
         Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
         document.dispatchEvent(new Event('visibilitychange'))",
        json!([]),
    )
    .await;
    // The test hook: every `registration.showNotification` the page makes, with its outcome.
    a.js(
        "const orig = ServiceWorkerRegistration.prototype.showNotification; window.__shown = [];
         ServiceWorkerRegistration.prototype.showNotification = function (t, o) {
           return orig.call(this, t, o).then(
             (v) => { window.__shown.push(`${t} | ${o.body} | ${this.active ? 'active' : 'no worker'}`); return v; },
             (e) => { window.__shown.push(`failed: ${e}`); throw e; });
         };",
        json!([]),
    )
    .await;
    bob.say(&group, "n1", "@alice valve 7 is stuck").await;
    let notes = a
        .wait_for(
            "a notification through the service worker",
            "return window.__shown.length ? window.__shown : null",
            json!([]),
        )
        .await;
    assert_eq!(
        notes,
        json!(["bob · Line 3 | @alice valve 7 is stuck | active"]),
        "notifications shown through the service worker"
    );
    a.wait_for(
        "the unread count in the title",
        "return document.title.startsWith('(1) ')",
        json!([]),
    )
    .await;

    // The worker's caches hold the versioned shell and never API data.
    let cached = a
        .js_async(
            "const done = arguments[0];
             (async () => { const out = [];
               for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
               return out; })().then(done, e => done(['error ' + e]))",
            json!([]),
        )
        .await;
    let cached: Vec<String> = serde_json::from_value::<Vec<String>>(cached).unwrap();
    assert!(
        cached.iter().any(|p| p.ends_with("/js/app.js")),
        "{cached:?}"
    );
    assert!(
        cached.iter().all(|p| p.starts_with("/assets/") || p == "/"),
        "{cached:?}"
    );
    a.quit().await;
}

/// axe-core (vendored with its licence under `tests/vendor/axe-core/`), injected through
/// WebDriver (script execution is not subject to the page's CSP).
const AXE: &str = include_str!("../vendor/axe-core/axe.min.js");

/// The serious and critical violations axe-core finds on the current page.
pub(crate) async fn axe(s: &Session<'_>) -> Vec<String> {
    if s.js("return typeof axe", json!([])).await != json!("object") {
        s.js(&format!("{AXE}\n;return true"), json!([])).await;
    }
    let v = s
        .js_async(
            "const done = arguments[0];
             axe.run(document, { resultTypes: ['violations'] }).then((r) => done(r.violations
               .filter((v) => v.impact === 'serious' || v.impact === 'critical')
               .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`)),
               (e) => done([`axe failed: ${e}`]))",
            json!([]),
        )
        .await;
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn axe_finds_no_serious_or_critical_violations_on_the_main_screens() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("alice", Role::Admin, PW).await;
    server.user("bob", Role::Operator, PW).await;
    let alice = Api::login(&server.client(), "alice", PW).await;
    let group = alice.group("Line 3", &["bob"]).await;
    alice.say(&group, "a1", "pump 2 @bob").await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki_hash(&server).await).await;
    let mut found = Vec::new();
    a.goto(&format!("{base}/")).await;
    a.find("#login-form").await;
    a.find("#site-info strong").await;
    for v in axe(&a).await {
        found.push(format!("sign-in: {v}"));
    }
    sign_in(&a, &base, "alice").await;
    let screens = [
        ("conversation list", "/", "#conv-list .conv-item"),
        ("conversation", "/c/GROUP", "#messages .msg[data-seq]"),
        ("people", "/people", "#contacts h3"),
        ("channels", "/channels", "#channel-name"),
        ("profile", "/profile", "#sign-out"),
        ("admin", "/admin", "tr[data-user='bob']"),
    ];
    for (name, path, ready) in screens {
        a.goto(&format!("{base}{}", path.replace("GROUP", &group)))
            .await;
        wait_online(&a).await;
        a.find(ready).await;
        for v in axe(&a).await {
            found.push(format!("{name}: {v}"));
        }
    }
    // The same in dark mode on a phone, for the chat screens.
    a.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    a.set_size(360, 740).await;
    for (name, path, ready) in &screens[..2] {
        a.goto(&format!("{base}{}", path.replace("GROUP", &group)))
            .await;
        wait_online(&a).await;
        a.find(ready).await;
        for v in axe(&a).await {
            found.push(format!("{name} (dark phone): {v}"));
        }
    }
    a.quit().await;
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The text of the conversation's live region (what a screen reader is given to read out).
const ANNOUNCED: &str =
    "const r = document.getElementById('announce'); return r ? r.textContent : null";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn new_messages_are_announced_and_the_keyboard_edits_cancels_and_switches() {
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
    let shift = bob.group("Shift", &["alice"]).await;
    let group = alice.group("Line 3", &["bob"]).await;
    let read = bob.say(&group, "h1", "history line").await;
    let r = alice
        .post(
            &format!("/api/v1/conversations/{group}/read"),
            json!({ "seq": read }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for i in 1..=40 {
        bob.say(&group, &format!("u{i}"), &format!("unread {i}"))
            .await;
    }
    let base = origin(&server);
    let spki = spki_hash(&server).await;
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki).await;
    let mut failed: Vec<String> = Vec::new();
    sign_in(&a, &base, "alice").await;
    a.goto(&format!("{base}/c/{group}")).await;
    wait_online(&a).await;
    wait_message(&a, "history line").await;

    // 4. Initials avatars: bob's say "B" in one colour, white on it at least 4.5:1 for every
    // avatar on the page; the grouped messages have none.
    let avatars = a
        .js(
            "const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
             const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
             const all = [...document.querySelectorAll('.avatar')];
             const low = all.map(e => { const s = getComputedStyle(e); const a = lum(rgb(s.color)), b = lum(rgb(s.backgroundColor));
               return [e.textContent, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; }).filter(([, c]) => c < 4.5);
             const bobs = [...document.querySelectorAll('#messages .msg[data-seq] .meta .avatar')];
             return [all.length > 1, low, [...new Set(bobs.map(e => e.textContent + ' ' + getComputedStyle(e).backgroundColor))].length,
               bobs[0]?.textContent, document.querySelectorAll('#messages .msg.grouped .avatar').length]",
            json!([]),
        )
        .await;
    if avatars != json!([true, [], 1, "B", 0]) {
        failed.push(format!(
            "avatars (several, low contrast, bob's kinds, bob's text, on grouped): {avatars}"
        ));
    }

    // 3. "New messages" right before the first unread; the jump button (the marker is out of
    // view at the bottom) brings it into view and goes away.
    const MARKER: &str = "
        const mk = document.querySelector('#messages .unread-sep');
        const next = mk && mk.nextElementSibling;
        return mk && [mk.textContent, next && next.querySelector('.text')?.textContent]";
    match a
        .wait_for("the new-messages marker", MARKER, json!([]))
        .await
    {
        v if v == json!(["New messages", "unread 1"]) => {}
        v => failed.push(format!("marker and the message after it: {v}")),
    }
    let marker_in_view = "
        const mk = document.querySelector('#messages .unread-sep');
        const sc = document.querySelector('.scroller').getBoundingClientRect();
        const r = mk.getBoundingClientRect();
        return [r.top >= sc.top - 1 && r.bottom <= sc.bottom + 1,
          document.getElementById('jump-unread').hidden]";
    a.wait_for(
        "the view at the newest message",
        "const sc = document.querySelector('.scroller');
         return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80",
        json!([]),
    )
    .await;
    let before = a.js(marker_in_view, json!([])).await;
    if before != json!([false, false]) {
        failed.push(format!(
            "at the bottom: marker in view, jump hidden: {before}"
        ));
    }
    a.click("#jump-unread").await;
    let after = a.js(marker_in_view, json!([])).await;
    if after != json!([true, true]) {
        failed.push(format!(
            "after the jump: marker in view, jump hidden: {after}"
        ));
    }

    // 1. A polite live region: history is not read out, a new message from bob is, alice's own
    // is not; the repainted list itself is not live (it would be read again whole).
    let said = a.js(ANNOUNCED, json!([])).await;
    if said != json!("") {
        failed.push(format!("the live region before any new message: {said}"));
    }
    let region = a
        .js(
            "const r = document.getElementById('announce');
             return r && [r.getAttribute('aria-live'), getComputedStyle(r).position,
               document.getElementById('messages').hasAttribute('aria-live')]",
            json!([]),
        )
        .await;
    if region != json!(["polite", "absolute", false]) {
        failed.push(format!("live region, position, list live: {region}"));
    }
    bob.say(&group, "n1", "pump 2 is back").await;
    wait_message(&a, "pump 2 is back").await;
    a.type_into("#composer", "on my way").await;
    a.type_into("#composer", ENTER).await;
    wait_message(&a, "on my way").await;
    let said = a.js(ANNOUNCED, json!([])).await;
    if said != json!("bob: pump 2 is back") {
        failed.push(format!(
            "announced after bob's and alice's messages: {said}"
        ));
    }

    // 2. Up in the empty composer edits alice's last message; Esc cancels; Up and a change save.
    const UP: &str = "\u{E013}";
    const DOWN: &str = "\u{E015}";
    const ESC: &str = "\u{E00C}";
    const ALT: &str = "\u{E00A}";
    const RELEASE: &str = "\u{E000}";
    let composer = "return [document.getElementById('composer').value,
        document.querySelector('.composer button[type=submit]').textContent]";
    a.type_into("#composer", UP).await;
    let state = a.js(composer, json!([])).await;
    if state != json!(["on my way", "Save edit"]) {
        failed.push(format!("composer after Up: {state}"));
    }
    a.type_into("#composer", ESC).await;
    let state = a.js(composer, json!([])).await;
    if state != json!(["", "Send"]) {
        failed.push(format!("composer after Esc: {state}"));
    }
    a.type_into("#composer", UP).await;
    a.type_into("#composer", ", 5 min").await;
    if a.js(composer, json!([])).await == json!(["on my way, 5 min", "Save edit"]) {
        a.type_into("#composer", ENTER).await;
        wait_message(&a, "on my way, 5 min").await;
    } else {
        failed.push("Up then typing did not edit alice's last message".into());
    }

    // Esc in the composer drops a reply.
    act(&a, "pump 2 is back", "Reply").await;
    a.type_into("#composer", ESC).await;
    let bar = a
        .js(
            "return document.querySelector('.reply-bar').hidden",
            json!([]),
        )
        .await;
    if bar != json!(true) {
        failed.push("Esc left the reply bar open".into());
    }

    // Alt+Down / Alt+Up walk the conversation list (newest first: Line 3, then Shift).
    let at = |path: String| {
        format!("return location.pathname === '{path}' && !!document.getElementById('composer')")
    };
    a.type_into("#composer", &format!("{ALT}{DOWN}{RELEASE}"))
        .await;
    let on_shift = at(format!("/c/{shift}"));
    for _ in 0..20 {
        if a.js(&on_shift, json!([])).await == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if a.js(&on_shift, json!([])).await == json!(true) {
        a.type_into("#composer", &format!("{ALT}{UP}{RELEASE}"))
            .await;
        a.wait_for("back on Line 3", &at(format!("/c/{group}")), json!([]))
            .await;
    } else {
        failed.push("Alt+Down did not open the next conversation".into());
    }
    a.quit().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn empty_states_say_what_to_do_people_browse_and_admins_see_pending_registrations() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("ada", Role::Admin, PW).await;
    server.user("bob", Role::Operator, PW).await;
    let hash = server.state().auth().hasher.hash(PW).await.unwrap();
    plantwire::users::create(
        server.state().log(),
        plantwire::users::NewUser {
            username: "petra".into(),
            display_name: "Petra Pending".into(),
            password_hash: hash,
            role: Role::Operator,
            status: plantwire::store::UserStatus::Pending,
            must_change_password: false,
        },
        &crate::support::test_author(),
    )
    .await
    .unwrap();
    let base = origin(&server);
    let spki = spki_hash(&server).await;
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki).await;
    let mut failed: Vec<String> = Vec::new();
    sign_in(&a, &base, "ada").await;

    // The Admin link counts the one registration waiting.
    let badge = "const b = document.getElementById('pending-badge');
        return b && [b.hidden, b.textContent]";
    match a
        .wait_for(
            "the pending badge",
            &format!("const v = (() => {{ {badge} }})(); return v && !v[0] && v"),
            json!([]),
        )
        .await
    {
        v if v == json!([false, "1"]) => {}
        v => failed.push(format!("pending badge: {v}")),
    }

    // Empty channels say how to make one.
    a.goto(&format!("{base}/channels")).await;
    let channels = a
        .wait_for(
            "the channel list",
            "return document.querySelector('#channel-list li')?.textContent",
            json!([]),
        )
        .await;
    if !channels.as_str().unwrap_or("").contains("Create one") {
        failed.push(format!("empty channel list: {channels}"));
    }

    // People: the directory with nobody typed (the test server's admin and bob; not ada herself,
    // not pending petra), and a
    // search with no hit says what to try.
    a.goto(&format!("{base}/people")).await;
    let people = a
        .wait_for(
            "the directory",
            "const l = document.querySelectorAll('#user-results li');
             return l.length && [...l].map(e => e.querySelector('.grow')?.textContent || e.textContent)",
            json!([]),
        )
        .await;
    if people != json!(["Everyone (2)", "Administrator (admin)", "bob display (bob)"]) {
        failed.push(format!("directory: {people}"));
    }
    a.type_into("#user-search", "zz").await;
    let none = a
        .wait_for(
            "no match",
            "return document.querySelector('#user-results .empty')?.textContent",
            json!([]),
        )
        .await;
    if !none
        .as_str()
        .unwrap_or("")
        .starts_with("No one matches \"zz\"")
    {
        failed.push(format!("search without hits: {none}"));
    }

    // No events and no alarms: each list says so and what brings something into it.
    for (path, script, start) in [
        (
            "/events",
            "const e = document.getElementById('events-empty'); return e && !e.hidden && e.textContent",
            "No events here. Devices send them",
        ),
        (
            "/alarms",
            "return [...document.querySelectorAll('.alarm-table td')].map(t => t.textContent).find(t => t.startsWith('No standing'))",
            "No standing alarms: every alarm is back to normal.",
        ),
    ] {
        a.goto(&format!("{base}{path}")).await;
        let said = a.wait_for(path, script, json!([])).await;
        if !said.as_str().unwrap_or("").starts_with(start) {
            failed.push(format!("{path} empty: {said}"));
        }
    }

    // Approving petra clears the badge.
    a.goto(&format!("{base}/admin")).await;
    a.click_found(
        "petra's row",
        "return [...document.querySelectorAll(\"tr[data-user='petra'] button\")].find(x => x.textContent === 'Approve')",
        json!([]),
    )
    .await;
    a.wait_for(
        "the badge gone",
        &format!("const v = (() => {{ {badge} }})(); return v && v[0]"),
        json!([]),
    )
    .await;
    a.quit().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
