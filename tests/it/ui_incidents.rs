//! The incident UI in a real headless Chromium, on a phone-sized window: an operator opens an
//! incident from a device's alarm row, answers the form with one value out of range (the reason
//! appears next to that field), corrects it and resolves the incident.

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
async fn an_incident_opened_from_an_alarm_row_is_answered_corrected_and_resolved_on_a_phone() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("boss", Role::Admin, PW).await;
    server.user("olga", Role::Operator, PW).await;
    let boss = Api::login(&server.client(), "boss", PW).await;
    let r = boss
        .post(
            "/api/v1/templates",
            json!({"id": "pump-trip", "name": "Pump trip",
                   "title": "{source} tripped at {attr.bar} bar",
                   "questions": [
                       {"id": "bar", "label": "Pressure at {source} now", "type": "number",
                        "min": 0, "max": 16, "unit": "bar", "required": true},
                       {"id": "cause", "label": "Cause", "type": "choice",
                        "options": ["seal", "bearing"], "required": true}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = server.device("plc-4").await;
    let raised = server
        .client()
        .with_bearer(
            hyper::Method::POST,
            "/api/v1/alarms",
            &token,
            Some(
                json!({"source": "pump-7", "condition": "pressure.high", "active": true,
                        "priority": "high", "message": "trip", "attributes": {"bar": 12.4}}),
            ),
        )
        .await;
    assert_eq!(raised.status, 201, "{:?}", raised.body);
    let alarm = raised.json()["id"].as_u64().unwrap();

    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    b.set_size(360, 740).await;
    sign_in(&b, &base, "olga").await;
    b.goto(&format!("{base}/alarms")).await;
    let row = format!("tr.alarm[data-id='{alarm}'] button.open-incident");
    // The alarm list redraws its rows each frame: click by script, not by element reference.
    b.wait_for(
        "the alarm row's button",
        "const x = document.querySelector(arguments[0]); if (x) x.click(); return Boolean(x)",
        json!([row]),
    )
    .await;
    b.wait_for(
        "the template to choose",
        "const s = document.getElementById('incident-template'); return s && s.value === 'pump-trip'",
        json!([]),
    )
    .await;
    b.click("#incident-open").await;
    b.wait_for(
        "the incident with its filled title and form",
        "const t = document.querySelector('.incident-title');
         return t && t.textContent === 'pump-7 tripped at 12.4 bar'
           && document.querySelector(\".field[data-qid='bar'] label\").textContent.startsWith('Pressure at pump-7 now')",
        json!([]),
    )
    .await;

    // One value out of range: the reason shows next to that field, nothing else is marked.
    b.type_into(".field[data-qid='bar'] input", "99").await;
    b.js(
        "const s = document.querySelector(\".field[data-qid='cause'] select\"); s.value = 'seal';",
        json!([]),
    )
    .await;
    b.click("#answers-save").await;
    b.wait_for(
        "the error next to the pressure",
        "const e = document.querySelector(\".field[data-qid='bar'] .field-error\");
         return e && !e.hidden && e.textContent.includes('at most 16')
           && document.querySelector(\".field[data-qid='cause'] .field-error\").hidden",
        json!([]),
    )
    .await;
    b.screenshot(&shots_dir().join("phone-incident-invalid.png"))
        .await;
    let olga = Api::login(&server.client(), "olga", PW).await;
    let list = olga.ok("/api/v1/incidents").await;
    let id = list["incidents"][0]["id"].as_str().unwrap().to_string();
    let view = olga.ok(&format!("/api/v1/incidents/{id}")).await;
    assert!(view["answers"].as_object().unwrap().is_empty(), "{view}");

    // Corrected: saved, shown as answered; then resolved.
    b.js(
        "document.querySelector(\".field[data-qid='bar'] input\").value = '';",
        json!([]),
    )
    .await;
    b.type_into(".field[data-qid='bar'] input", "12.4").await;
    b.click("#answers-save").await;
    b.wait_for(
        "the answers saved",
        "const f = document.querySelector(\".field[data-qid='bar']\");
         return f && f.querySelector('.who') && f.querySelector('.field-error').hidden",
        json!([]),
    )
    .await;
    b.click(".state-actions button[data-to='resolved']").await;
    b.wait_for(
        "the incident resolved",
        "const s = document.getElementById('incident-state'); return s && s.textContent === 'resolved'",
        json!([]),
    )
    .await;
    b.screenshot(&shots_dir().join("phone-incident-resolved.png"))
        .await;
    let view = olga.ok(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(view["state"], "resolved");
    assert_eq!(view["answers"]["bar"]["value"], 12.4);
    assert_eq!(view["answers"]["cause"]["value"], "seal");
    assert_eq!(view["alarms"][0], alarm);
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_template_builder_previews_from_the_newest_event_and_marks_an_unknown_placeholder() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("boss", Role::Admin, PW).await;
    let token = server.device("plc-9").await;
    let r = server
        .client()
        .post_json(
            "/api/v1/events",
            Some(&token),
            &json!({"source": "pump-9", "type": "pressure.high", "severity": "error",
                    "attributes": {"bar": 13.1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let b = driver.session(&spki_hash(&server).await).await;
    sign_in(&b, &base, "boss").await;
    b.goto(&format!("{base}/templates")).await;
    b.type_into("#tpl-name", "Pump trip").await;
    b.type_into("fieldset.question input[aria-label='Question id']", "cause")
        .await;
    b.type_into(
        "fieldset.question input[aria-label='Label']",
        "Why did {source} trip?",
    )
    .await;
    b.type_into("#tpl-title", "{source} at {attr.bar} bar")
        .await;
    b.wait_for(
        "the preview filled from the newest event",
        "const t = document.querySelector('.preview h4'); const q = document.querySelector('.preview li');
         return t && t.textContent === 'pump-9 at 13.1 bar' && q && q.textContent.startsWith('Why did pump-9 trip?')",
        json!([]),
    )
    .await;

    b.type_into("#tpl-title", " {bogus}").await;
    b.wait_for(
        "the unknown placeholder named next to the title",
        "const e = document.getElementById('tpl-errors'); return e && !e.hidden && e.textContent.includes('bogus')",
        json!([]),
    )
    .await;
    b.js(
        "document.getElementById('tpl-title').value = '';",
        json!([]),
    )
    .await;
    b.type_into("#tpl-title", "{source} tripped").await;
    b.wait_for(
        "the error gone",
        "return document.getElementById('tpl-errors').hidden",
        json!([]),
    )
    .await;
    b.click("#tpl-save").await;
    b.wait_for(
        "the saved template listed",
        "return Boolean(document.querySelector(\"tr[data-id='pump-trip']\"))",
        json!([]),
    )
    .await;
    let boss = Api::login(&server.client(), "boss", PW).await;
    let t = boss.ok("/api/v1/templates/pump-trip").await;
    assert_eq!(t["current"]["title"], "{source} tripped");
    assert_eq!(
        t["current"]["questions"][0]["label"],
        "Why did {source} trip?"
    );
    b.quit().await;
}
