//! Unit tests of the chat rules and of chat's socket audience, through the `Log` handle against a
//! temp redb: no HTTP server.

use crate::audience::Audience;
use crate::config::ChatConfig;
use crate::log::tests::open;
use crate::log::{Author, Log, SubmitError};
use crate::store::{ConvKind, MemberRole, MemberRow, Role, StoreError, UserStatus};
use crate::users::{self, NewUser};

use super::Actor;
use super::conversations;
use super::messages::{self, SendMessage};
use super::replay::Visibility;

async fn person(log: &Log, name: &str, role: Role) -> Actor {
    users::create(
        log,
        NewUser {
            username: name.into(),
            display_name: name.into(),
            password_hash: "not-a-real-hash".into(),
            role,
            status: UserStatus::Active,
            must_change_password: false,
        },
        &Author::System,
    )
    .await
    .unwrap();
    Actor {
        user: name.into(),
        role,
    }
}

fn text(key: &str, text: &str) -> SendMessage {
    SendMessage {
        key: key.into(),
        text: text.into(),
        reply_to: None,
        attachments: Vec::new(),
    }
}

fn code(e: SubmitError) -> &'static str {
    match e {
        SubmitError::Rejected(r) => r.code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn posting_rules_outsiders_viewers_and_idempotent_retries() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let cfg = ChatConfig::default();
    let alice = person(&log, "alice", Role::Operator).await;
    let bob = person(&log, "bob", Role::Operator).await;
    let carol = person(&log, "carol", Role::Operator).await;
    let vic = person(&log, "vic", Role::Viewer).await;
    let g = conversations::create(
        &log,
        &cfg,
        &alice,
        ConvKind::Group,
        "Shift A",
        vec!["bob".into()],
    )
    .await
    .unwrap();

    let first = messages::send(&log, &cfg, &bob, &g.id, text("k1", "pressure ok"))
        .await
        .unwrap();
    let again = messages::send(&log, &cfg, &bob, &g.id, text("k1", "pressure ok"))
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.seq, again.seq, "a retry returns the first seq");

    let outsider = messages::send(&log, &cfg, &carol, &g.id, text("k2", "let me in")).await;
    assert_eq!(code(outsider.unwrap_err()), "no_such_conversation");
    let viewer = messages::send(&log, &cfg, &vic, &g.id, text("k3", "hello")).await;
    assert_eq!(code(viewer.unwrap_err()), "read_only");
    let empty = messages::send(&log, &cfg, &alice, &g.id, text("k4", "")).await;
    assert!(matches!(empty, Err(SubmitError::Rejected(_))));
    let edit = messages::edit(&log, &cfg, &alice, &g.id, first.seq, "not mine").await;
    assert_eq!(code(edit.unwrap_err()), "not_author");
    log.close().await;
}

#[tokio::test]
async fn replay_and_live_visibility_follow_membership_spans() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let cfg = ChatConfig::default();
    let alice = person(&log, "alice", Role::Operator).await;
    let _bob = person(&log, "bob", Role::Operator).await;
    let g = conversations::create(&log, &cfg, &alice, ConvKind::Group, "Shift B", vec![])
        .await
        .unwrap();
    let before = messages::send(&log, &cfg, &alice, &g.id, text("a1", "before bob"))
        .await
        .unwrap();
    conversations::add_members(&log, &cfg, &alice, &g.id, vec!["bob".into()])
        .await
        .unwrap();
    let during = messages::send(&log, &cfg, &alice, &g.id, text("a2", "while bob is in"))
        .await
        .unwrap();
    conversations::remove_member(&log, &alice, &g.id, "bob")
        .await
        .unwrap();
    let after = messages::send(&log, &cfg, &alice, &g.id, text("a3", "after bob left"))
        .await
        .unwrap();

    let rtx = log.read().unwrap();
    let head = log.head(&rtx).unwrap();
    let bob_view = Visibility::load(&rtx, "bob").unwrap();
    let seqs = bob_view.replay(&rtx, 0, head, 1000).unwrap().unwrap();
    assert!(seqs.contains(&during.seq));
    assert!(
        !seqs.contains(&before.seq),
        "nothing from before bob joined"
    );
    assert!(!seqs.contains(&after.seq), "nothing from after bob left");
    assert_eq!(
        bob_view.replay(&rtx, 0, head, 1).unwrap(),
        None,
        "over the room: too far"
    );

    // Live: a socket that started before the removal sees the removal, then nothing more.
    let mut live = Visibility::load(&rtx, "bob").unwrap();
    // `observe` (the socket's set for typing and presence) follows the same membership.
    let mut observed = live.clone();
    drop(rtx);
    let rtx = log.read().unwrap();
    let mut seen = Vec::new();
    let all: Vec<u64> = (1..=head).collect();
    let mut follower = log.follow(0).unwrap();
    follower.only(all);
    let mut was_member = false;
    while let Some(batch) = follower.replay_batch().unwrap() {
        for e in batch {
            if Audience::admit(&mut live, &e) {
                seen.push(e.seq);
            }
            observed.observe(&e);
            assert_eq!(
                observed.is_member(&g.id),
                live.is_member(&g.id),
                "at {}",
                e.seq
            );
            was_member |= observed.is_member(&g.id);
        }
    }
    assert!(was_member, "the walk saw bob join");
    assert!(!seen.contains(&after.seq));
    drop(rtx);
    log.close().await;
}

#[tokio::test]
async fn a_send_moves_the_senders_read_marker_in_place_and_an_update_needs_a_stored_member() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "north");
    let cfg = ChatConfig::default();
    let alice = person(&log, "alice", Role::Operator).await;
    let bob = person(&log, "bob", Role::Operator).await;
    let g = conversations::create(
        &log,
        &cfg,
        &alice,
        ConvKind::Group,
        "Shift C",
        vec!["bob".into()],
    )
    .await
    .unwrap();
    let sent = messages::send(&log, &cfg, &bob, &g.id, text("b1", "valve 3 closed"))
        .await
        .unwrap();
    let rtx = log.read().unwrap();
    let mine = rtx.member(&g.id, "bob").unwrap().unwrap();
    assert_eq!((mine.last_read_seq, mine.read_count), (sent.seq, 1));
    assert_eq!(rtx.user_convs("bob").unwrap(), vec![g.id.clone()]);
    drop(rtx);

    // The send path no longer writes the user->conversation index, so an update of a member
    // that was never stored must be refused rather than leave a row no index points to.
    let conv = g.id.clone();
    let ghost = log
        .submit(move |tx| {
            tx.views().update_member(&MemberRow {
                conv: conv.clone(),
                user: "carol".into(),
                role: MemberRole::Member,
                active: true,
                spans: Vec::new(),
                last_read_seq: 0,
                read_count: 0,
                hidden: false,
            })?;
            Ok(())
        })
        .await;
    match ghost {
        Err(SubmitError::Storage(e)) => {
            assert!(
                matches!(*e, StoreError::NotStored { what: "member" }),
                "{e}"
            );
        }
        other => panic!("expected a refused update, got {other:?}"),
    }
    let rtx = log.read().unwrap();
    assert!(rtx.member(&g.id, "carol").unwrap().is_none(), "rolled back");
    drop(rtx);
    log.close().await;
}
