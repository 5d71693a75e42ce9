//! The people directory past its first page: `GET /api/v1/users` with the `after` cursor (every
//! active user once, in order, bad cursors refused) and the UI loading more as it scrolls.

use serde_json::{Value, json};

use crate::chat_support::{Api, PW};
use crate::support::{TestServer, test_author};
use crate::ui::{BROWSER, origin, sign_in, spki_hash};
use crate::webdriver::{Driver, find_browser};
use plantwire::store::{Role, UserStatus};
use plantwire::users::{NewUser, create};

/// `n` more active operators `p000`… (one password hash for all, so it is quick), and one
/// disabled `pzz-off`, who must never be listed.
async fn people(server: &TestServer, n: usize) {
    let hash = server.state().auth().hasher.hash(PW).await.unwrap();
    for i in 0..=n {
        let (username, status) = if i == n {
            ("pzz-off".to_string(), UserStatus::Disabled)
        } else {
            (format!("p{i:03}"), UserStatus::Active)
        };
        let user = NewUser {
            display_name: format!("Person {username}"),
            username,
            password_hash: hash.clone(),
            role: Role::Operator,
            status,
            must_change_password: false,
        };
        create(server.state().log(), user, &test_author())
            .await
            .unwrap();
    }
}

/// Every page of `q` at `limit`, following `next`: the usernames and each page's size.
async fn all_pages(api: &Api, q: &str, limit: usize) -> (Vec<String>, Vec<usize>) {
    let mut names = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let cursor = after
            .as_ref()
            .map(|a| format!("&after={a}"))
            .unwrap_or_default();
        let r = api
            .get(&format!("/api/v1/users?q={q}&limit={limit}{cursor}"))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let v = r.json();
        let page: Vec<String> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_string())
            .collect();
        sizes.push(page.len());
        names.extend(page);
        match &v["next"] {
            Value::String(n) => after = Some(n.clone()),
            Value::Null => return (names, sizes),
            other => panic!("next is {other}"),
        }
    }
    panic!("no last page");
}

#[tokio::test]
async fn the_directory_pages_with_a_cursor_in_username_order() {
    let server = TestServer::start().await;
    server.user("alice", Role::Viewer, PW).await;
    people(&server, 250).await;
    let alice = Api::login(&server.client(), "alice", PW).await;

    let (names, sizes) = all_pages(&alice, "", 100).await;
    assert_eq!(sizes, vec![100, 100, 52], "admin, alice and 250 people");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "in username order, each once");
    assert!(!names.iter().any(|n| n == "pzz-off"), "no disabled user");

    // With a query the cursor pages the matches: p100-p199 (by username or the display name's
    // second word), and the page that ends them exactly says there is no more.
    let (hits, sizes) = all_pages(&alice, "p1", 30).await;
    assert_eq!(sizes, vec![30, 30, 30, 10]);
    assert_eq!(hits.first().map(String::as_str), Some("p100"));
    assert_eq!(hits.last().map(String::as_str), Some("p199"));

    // A cursor past everyone is an empty last page; a bad one is refused with its code.
    let r = alice.get("/api/v1/users?after=zzz").await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (200, json!({"users": [], "next": null}))
    );
    let long = "a".repeat(65);
    for bad in ["", long.as_str()] {
        let r = alice.get(&format!("/api/v1/users?after={bad}")).await;
        assert_eq!(r.status, 400, "after={bad}");
        assert_eq!(r.error_code(), "invalid_after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pw_has_browser),
    ignore = "needs chromium and chromedriver (CI runs it)"
)]
async fn the_people_screen_loads_more_as_it_scrolls() {
    let Some((driver_bin, browser_bin)) = find_browser() else {
        return;
    };
    let _one = BROWSER.lock().await;
    let server = TestServer::start().await;
    server.user("alice", Role::Operator, PW).await;
    people(&server, 250).await;
    let base = origin(&server);
    let driver = Driver::start(&driver_bin, &browser_bin).await;
    let a = driver.session(&spki_hash(&server).await).await;
    sign_in(&a, &base, "alice").await;
    a.goto(&format!("{base}/people")).await;
    let rows = "return document.querySelectorAll('#user-results li.row').length";
    a.wait_for("the first page", &format!("{rows} >= 99"), json!([]))
        .await;
    let first = a.js(rows, json!([])).await;
    assert_eq!(
        first,
        json!(99),
        "one page before any scroll: admin and 98 people (not me)"
    );
    // Scrolling "More people" into view brings the next pages, until everyone is there.
    for _ in 0..10 {
        let done = a
            .js(
                "const m = document.getElementById('people-more');
                 if (m.hidden) return true;
                 m.scrollIntoView({ block: 'end' });
                 return false",
                json!([]),
            )
            .await;
        if done == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let end = a
        .js(
            "return [document.querySelectorAll('#user-results li.row').length,
                     document.querySelector('#user-results .dir-head').textContent,
                     new Set([...document.querySelectorAll('#user-results li.row .grow')]
                       .map(e => e.textContent)).size]",
            json!([]),
        )
        .await;
    a.quit().await;
    assert_eq!(
        end,
        json!([251, "Everyone (251)", 251]),
        "admin and 250 people, each once"
    );
}
