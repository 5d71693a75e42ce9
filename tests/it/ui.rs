//! The operator UI in a real headless Chromium against the real server: two people chatting
//! live, a server restart with a message typed offline, hostile text, an image, where requests go.

use std::path::PathBuf;

use base64::Engine;
use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::support::TestServer;
use crate::webdriver::{Driver, ENTER, Session, TAB, find_browser};
use plantwire::store::Role;

/// One browser at a time: the machines running these tests have few cores.
pub(crate) static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAGAAAABACAIAAABqVuVZAAAAcklEQVR42u3QMQ0AAAgDMJSgE4mThY0dTaqgk9sqe6kyggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIUF/QA8CR0eHvunxIAAAAAElFTkSuQmCC";

/// Base64 SHA-256 of the server certificate's SubjectPublicKeyInfo, for
/// `--ignore-certificate-errors-spki-list` (trusts this key only).
pub(crate) async fn spki_hash(server: &TestServer) -> String {
    let tls = server.client().tls().await;
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        cert.tbs_certificate.subject_pki.raw,
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

pub(crate) fn shots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn origin(server: &TestServer) -> String {
    format!("https://127.0.0.1:{}", server.addr.port())
}

pub(crate) async fn sign_in(b: &Session<'_>, base: &str, user: &str) {
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-form input[name=username]", user).await;
    b.type_into("#login-form input[name=password]", PW).await;
    b.click("#login-form button[type=submit]").await;
    wait_online(b).await;
}

pub(crate) async fn wait_online(b: &Session<'_>) {
    b.wait_for(
        "connected",
        "const c = document.getElementById('conn'); return c && c.dataset.state === 'online'",
        json!([]),
    )
    .await;
}

/// Waits until a delivered (not pending) message with exactly this text is on the page.
async fn wait_message(b: &Session<'_>, text: &str) -> Value {
    b.wait_for(
        text,
        "return [...document.querySelectorAll('#messages .msg[data-seq] .text')]
           .some(e => e.textContent === arguments[0])",
        json!([text]),
    )
    .await
}

/// Clicks the action (by its label or aria-label) of the delivered message with this text,
/// opening the message's action menu first.
async fn act(s: &Session<'_>, text: &str, label: &str) {
    crate::ui_chat_product::act(s, text, label).await;
}

async fn users(server: &TestServer) -> (Api, Api, String) {
    server.user("alice", Role::Admin, PW).await;
    server.user("bob", Role::Operator, PW).await;
    let c = server.client();
    let alice = Api::login(&c, "alice", PW).await;
    let bob = Api::login(&c, "bob", PW).await;
    let group = alice.group("Line 3", &["bob"]).await;
    (alice, bob, group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn two_operators_chat_live_in_real_browsers() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    let (alice_api, _bob_api, group) = users(&server).await;
    let base = origin(&server);
    let spki = spki_hash(&server).await;
    let shots = shots_dir();
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki).await;
    let b = driver.session(&spki).await;

    a.goto(&format!("{base}/")).await;
    a.find("#login-form").await;
    // The sign-in page names the site and shows the CA fingerprint to compare.
    let info = server.client().get("/api/v1/site").await.json();
    let shown = a
        .wait_for(
            "the site and fingerprint",
            "return document.getElementById('site-info')?.textContent",
            json!([]),
        )
        .await;
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains(info["site"].as_str().unwrap())
            && shown.contains(info["ca_fingerprint"].as_str().unwrap()),
        "{shown} / {info}"
    );
    a.screenshot(&shots.join("desktop-sign-in.png")).await;
    sign_in(&a, &base, "alice").await;
    sign_in(&b, &base, "bob").await;

    // B opens the group from the list; A arrives by URL (the SPA fallback serves the page).
    b.click(&format!(".conv-item[data-id='{group}']")).await;
    a.goto(&format!("{base}/c/{group}")).await;
    wait_online(&a).await;
    a.find("#composer").await;
    b.find("#composer").await;
    b.js("window.__samePage = true", json!([])).await;

    // Typing shows on the other side before the message is sent.
    a.type_into("#composer", "hello from alice").await;
    b.wait_for(
        "alice typing",
        "return document.getElementById('typing').textContent.includes('alice is typing')",
        json!([]),
    )
    .await;
    a.type_into("#composer", ENTER).await;
    wait_message(&b, "hello from alice").await;

    b.type_into("#composer", "reply from bob").await;
    b.type_into("#composer", ENTER).await;
    wait_message(&a, "reply from bob").await;
    // A has the conversation open, so A's read marker reaches B as "seen by".
    b.wait_for(
        "seen by alice",
        "return document.getElementById('seen').textContent.includes('alice')",
        json!([]),
    )
    .await;
    assert_eq!(
        b.js("return window.__samePage === true", json!([])).await,
        true
    );

    // Reactions, replies, edits, @mention completion and deletes, each seen by the other side.
    act(&b, "hello from alice", "React 👍").await;
    a.wait_for(
        "reaction",
        "return [...document.querySelectorAll('#messages .react')].some(r => r.getAttribute('aria-label')?.startsWith('👍 1') && r.querySelector('svg'))",
        json!([]),
    )
    .await;
    act(&b, "hello from alice", "Reply").await;
    b.type_into("#composer", "agreed").await;
    b.type_into("#composer", ENTER).await;
    a.wait_for(
        "reply quote",
        "const li = [...document.querySelectorAll('#messages .msg[data-seq]')]
           .find(l => l.querySelector('.text')?.textContent === 'agreed');
         return li && li.querySelector('.quote')?.textContent.includes('alice: hello from alice')",
        json!([]),
    )
    .await;
    act(&a, "hello from alice", "Edit").await;
    a.type_into("#composer", ", edited").await;
    a.type_into("#composer", ENTER).await;
    wait_message(&b, "hello from alice, edited").await;
    a.type_into("#composer", "ping @b").await;
    a.find(".suggest button").await;
    a.type_into("#composer", TAB).await;
    assert_eq!(
        a.js(
            "return document.getElementById('composer').value",
            json!([])
        )
        .await,
        "ping @bob "
    );
    a.type_into("#composer", "now").await;
    a.type_into("#composer", ENTER).await;
    wait_message(&b, "ping @bob now").await;
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll('#messages .mention.me')].map(e => e.textContent)",
            json!([])
        )
        .await,
        json!(["@bob"])
    );
    act(&a, "ping @bob now", "Delete").await;
    a.accept_alert().await;
    b.wait_for(
        "deleted",
        "return !![...document.querySelectorAll('#messages .text.deleted')].length",
        json!([]),
    )
    .await;

    // Hostile text is shown as text and runs nothing.
    let hostile = "<img src=x onerror=alert(1)> and <script>window.__pwned=1</script>";
    a.type_into("#composer", hostile).await;
    a.type_into("#composer", ENTER).await;
    wait_message(&b, hostile).await;
    let checks = b
        .js(
            "return {
               img: document.querySelectorAll('#messages img[src=\"x\"]').length,
               script: document.querySelectorAll('#messages script').length,
               pwned: window.__pwned === undefined}",
            json!([]),
        )
        .await;
    assert_eq!(checks, json!({"img": 0, "script": 0, "pwned": true}));
    assert_eq!(b.alert_text().await, None);
    assert_eq!(a.alert_text().await, None);

    // A link is clickable only as http(s), and opens without an opener or a referrer.
    a.type_into(
        "#composer",
        "manual at https://example.invalid/doc and javascript:alert(2)",
    )
    .await;
    a.type_into("#composer", ENTER).await;
    let link = b
        .wait_for(
            "link",
            "const l = [...document.querySelectorAll('#messages .text a')];
             return l.length ? l.map(x => [x.getAttribute('href'), x.rel]) : null",
            json!([]),
        )
        .await;
    assert_eq!(
        link,
        json!([["https://example.invalid/doc", "noopener noreferrer"]])
    );

    // An image uploaded by A shows as a preview for B, and enlarges on click.
    let dir = tempfile::TempDir::new().unwrap();
    let png = dir.path().join("gauge.png");
    std::fs::write(
        &png,
        base64::engine::general_purpose::STANDARD
            .decode(PNG_B64)
            .unwrap(),
    )
    .unwrap();
    a.type_into("#file-input", png.to_str().unwrap()).await;
    a.wait_for(
        "upload done",
        "return document.querySelector('.tray .upload')?.textContent.includes('✓')",
        json!([]),
    )
    .await;
    a.type_into("#composer", "gauge photo").await;
    a.type_into("#composer", ENTER).await;
    wait_message(&b, "gauge photo").await;
    b.wait_for(
        "image preview loaded",
        "const i = document.querySelector('#messages .attachment.image img');
         return i && i.complete && i.naturalWidth === 96",
        json!([]),
    )
    .await;
    b.screenshot(&shots.join("desktop-conversation.png")).await;
    b.click("#messages .thumb").await;
    b.find("dialog.lightbox[open] img").await;
    b.screenshot(&shots.join("desktop-image-enlarged.png"))
        .await;
    b.click("dialog.lightbox button").await;

    // The other screens, at desktop and phone widths.
    a.click("[data-nav='/people']").await;
    a.find("#contacts h3").await;
    a.screenshot(&shots.join("desktop-people.png")).await;
    a.click("[data-nav='/admin']").await;
    a.find("tr[data-user='bob']").await;
    // A new account's one-time password: monospace, with a copy button; the form clears.
    a.type_into("#new-account input[name=username]", "carol")
        .await;
    a.type_into("#new-account input[aria-label='Display name']", "Carol")
        .await;
    a.click("#new-account button.primary").await;
    a.find("#otp-value").await;
    let otp = a
        .js(
            "const o = document.getElementById('otp-value');
             return [o.textContent, getComputedStyle(o).fontFamily, !!document.getElementById('otp-copy'),
                     document.querySelector('#new-account input[name=username]').value]",
            json!([]),
        )
        .await;
    assert!(otp[1].as_str().unwrap().contains("monospace"), "{otp}");
    assert_eq!((&otp[2], &otp[3]), (&json!(true), &json!("")), "{otp}");
    let r = server
        .client()
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": "carol", "password": otp[0]}),
        )
        .await;
    assert_eq!(r.status, 200, "the shown one-time password signs in");
    a.screenshot(&shots.join("desktop-admin.png")).await;
    b.set_size(360, 740).await;
    b.click("[data-nav='/']").await;
    b.find(&format!(".conv-item[data-id='{group}']")).await;
    b.screenshot(&shots.join("phone-conversations.png")).await;
    b.click(&format!(".conv-item[data-id='{group}']")).await;
    wait_message(&b, "gauge photo").await;
    b.screenshot(&shots.join("phone-conversation.png")).await;
    b.click("[data-nav='/profile']").await;
    b.find("#sign-out").await;
    b.screenshot(&shots.join("phone-profile.png")).await;

    // Every request either page made went to this server (or stayed inside the page). The
    // browser's own start page (`chrome://…`, before the first navigation) never leaves it.
    for (who, s) in [("alice", &a), ("bob", &b)] {
        let mut urls = Vec::new();
        for e in s.performance_log().await {
            let p = &e["message"]["params"];
            match e["message"]["method"].as_str() {
                Some("Network.requestWillBeSent") => {
                    urls.push(p["request"]["url"].as_str().unwrap().to_string())
                }
                Some("Network.webSocketCreated") => {
                    urls.push(p["url"].as_str().unwrap().to_string())
                }
                _ => {}
            }
        }
        assert!(urls.len() > 5, "{who}: too few requests recorded: {urls:?}");
        let wss = base.replacen("https", "wss", 1);
        for u in &urls {
            assert!(
                u.starts_with(&format!("{base}/"))
                    || u.starts_with(&format!("{wss}/"))
                    || u.starts_with("data:")
                    || u.starts_with("blob:")
                    || u.starts_with("chrome://")
                    || u.starts_with("chrome-untrusted://"),
                "{who}'s page requested {u}"
            );
        }
    }

    // Nothing was sent twice.
    let texts: Vec<String> = alice_api.history(&group, "").await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 7, "{texts:?}");
    a.quit().await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn a_message_typed_while_the_server_is_down_arrives_once_after_restart() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    let (_alice, _bob, group) = users(&server).await;
    let base = origin(&server);
    let addr = server.addr;
    let spki = spki_hash(&server).await;
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki).await;
    sign_in(&b, &base, "bob").await;
    b.goto(&format!("{base}/c/{group}")).await;
    wait_online(&b).await;
    b.find("#composer").await;
    b.js("window.__samePage = true", json!([])).await;

    let dir = server.stop().await;
    b.wait_for(
        "offline shown",
        "return document.getElementById('conn').dataset.state !== 'online'",
        json!([]),
    )
    .await;
    b.type_into("#composer", "typed while down").await;
    b.type_into("#composer", ENTER).await;
    b.wait_for(
        "pending shown",
        "return [...document.querySelectorAll('#messages .msg.pending .text')]
           .some(e => e.textContent === 'typed while down')",
        json!([]),
    )
    .await;
    b.screenshot(&shots_dir().join("desktop-offline-pending.png"))
        .await;

    // The same state dir on the same port: same certificate, same sessions.
    let server = TestServer::start_in(dir, move |c| c.server.listen = vec![addr]).await;
    let alice = Api::login(&server.client(), "alice", PW).await;
    alice
        .say(&group, "k-after-restart", "sent after restart")
        .await;

    wait_message(&b, "sent after restart").await;
    wait_message(&b, "typed while down").await;
    wait_online(&b).await;
    b.wait_for(
        "outbox empty",
        "return document.querySelectorAll('#messages .msg.pending').length === 0",
        json!([]),
    )
    .await;
    assert_eq!(
        b.js("return window.__samePage === true", json!([])).await,
        true
    );

    // A reload resends nothing: the outbox was emptied by the ack.
    b.goto(&format!("{base}/c/{group}")).await;
    wait_message(&b, "typed while down").await;
    wait_online(&b).await;
    let h = alice.history(&group, "").await;
    let n = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text"] == "typed while down")
        .count();
    assert_eq!(n, 1, "{h}");
    b.quit().await;
    drop(driver);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn first_sign_in_forces_a_new_password_and_an_expired_access_cookie_is_refreshed() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let clock = std::sync::Arc::new(plantwire::clock::ManualClock::new(now_us));
    let server =
        TestServer::start_full(tempfile::TempDir::new().unwrap(), clock.clone(), |_| {}).await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;

    b.goto(&format!("{base}/")).await;
    b.type_into("#login-form input[name=username]", "admin")
        .await;
    b.type_into("#login-form input[name=password]", &server.admin_otp())
        .await;
    b.click("#login-form button[type=submit]").await;
    b.find("#password-form").await;
    b.screenshot(&shots_dir().join("desktop-first-password.png"))
        .await;
    b.type_into("#password-form input[name=new_password]", PW)
        .await;
    // A typo in the confirmation is caught before anything is sent; the toggle shows both.
    b.type_into(
        "#password-form input[name=confirm_password]",
        "typo-typo-typo",
    )
    .await;
    b.click("#password-form button[type=submit]").await;
    b.wait_for(
        "the mismatch",
        "return document.querySelector('#password-form .error')?.textContent.includes('differ')",
        json!([]),
    )
    .await;
    b.click("#password-form input[name=show_passwords]").await;
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll('#password-form input[name$=_password]')].map(i => i.type)",
            json!([])
        )
        .await,
        json!(["text", "text", "text"])
    );
    b.js(
        "document.querySelector('#password-form input[name=confirm_password]').value = ''",
        json!([]),
    )
    .await;
    b.type_into("#password-form input[name=confirm_password]", PW)
        .await;
    b.click("#password-form button[type=submit]").await;
    wait_online(&b).await;
    let admin = Api::login(&server.client(), "admin", PW).await;
    assert_eq!(
        admin.ok("/api/v1/auth/me").await["must_change_password"],
        false
    );

    // Past the access token's life: the next call gets 401, refreshes by cookie and retries.
    b.performance_log().await;
    clock.advance_us(16 * 60 * 1_000_000);
    b.click("[data-nav='/people']").await;
    b.find("#contacts h3").await;
    assert_eq!(
        b.js("return !!document.getElementById('login-form')", json!([]))
            .await,
        false
    );
    let refreshed = b.performance_log().await.iter().any(|e| {
        e["message"]["method"] == "Network.requestWillBeSent"
            && e["message"]["params"]["request"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/api/v1/auth/refresh"))
    });
    assert!(refreshed, "no refresh request was made");
    b.quit().await;
}
