//! The conformance suite: what every [`Store`] backend must do, written once.
//!
//! A backend's test calls [`run_all`] with a fresh store. Each check uses its own user names, so
//! they can share one store. Checks panic with a message on failure, like any test.

// A test suite, compiled into the library only so that every backend's tests can run it: it
// fails loudly by design, as tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use natter_types::{ChatKey, DeviceId, MediaId, UserId};

use crate::{
    Content, GroupRecord, MediaRecord, MediaState, Member, NewMessage, PushJob, PushPlatform,
    PushToken, ReceiptMark, ReceiptStatus, RefreshGrant, Rotation, Store, UserRecord,
};
use natter_types::GroupId;

fn user(s: &str) -> UserId {
    UserId::new(s).expect("test user id")
}

/// A text message from `from` to `to` (both readers), for backends' own tests too.
pub fn text(from: &UserId, to: &UserId, cid: Option<&str>, body: &str) -> NewMessage {
    let mut readers = vec![from.clone()];
    if from != to {
        readers.push(to.clone());
    }
    NewMessage {
        chat: ChatKey::direct(from, to),
        from: from.clone(),
        dev: DeviceId::new("phone").expect("device"),
        cid: cid.map(str::to_owned),
        readers,
        content: Content {
            kind: "text".into(),
            body: body.into(),
            media: None,
            reply_to: None,
            ttl: None,
            event: None,
        },
        group_update: None,
        media: None,
    }
}

/// Runs every check against `store`.
pub async fn run_all(store: Arc<dyn Store>) {
    users_are_created_once_listed_and_removed(&*store).await;
    a_removed_user_leaves_nothing_to_a_namesake(&*store).await;
    a_message_lands_in_both_inboxes_with_gap_free_seqs(&*store).await;
    a_resent_cid_returns_the_first_message_and_writes_nothing(&*store).await;
    concurrent_sends_get_unique_ids_and_gap_free_seqs(store.clone()).await;
    sync_pages_with_a_limit(&*store).await;
    history_is_newest_first_and_pages_by_id(&*store).await;
    chats_list_last_message_and_unread(&*store).await;
    dedup_purge_forgets_old_cids(&*store).await;
    a_refresh_token_rotates_once_and_a_reused_one_ends_the_session(&*store).await;
    refresh_grants_are_bounded_per_user_and_go_with_the_user(&*store).await;
    a_group_changes_with_its_system_message(&*store).await;
    receipts_are_raised_once(&*store).await;
    the_read_pointer_moves_forward_and_counts_down_unread(&*store).await;
    a_push_token_has_one_owner(&*store).await;
    push_jobs_collapse_per_chat_and_settle_by_version(&*store).await;
    media_goes_from_pending_to_ready_to_expired_with_its_messages(&*store).await;
}

/// An upload is pending, then ready; a message carrying it is linked in the same append; expiry
/// marks that message and moves the upload out of every sweep. An abandoned pending upload is
/// found by the sweep and forgotten.
pub async fn media_goes_from_pending_to_ready_to_expired_with_its_messages(store: &dyn Store) {
    let (a, b) = (user("media-a"), user("media-b"));
    let now = natter_types::clock::now_ms();
    let rec = |state| MediaRecord {
        id: MediaId::generate(),
        owner: a.clone(),
        mime: "image/png".into(),
        size: 3,
        sha256: None,
        state,
        sent_in: Vec::new(),
    };
    let photo = rec(MediaState::Pending);
    let abandoned = rec(MediaState::Pending);
    store.media_create(photo.clone()).await.expect("create");
    store.media_create(abandoned.clone()).await.expect("create");
    let later = now + 60_000;
    let pending = store
        .media_older(MediaState::Pending, later, 10)
        .await
        .expect("older");
    let pending: Vec<_> = pending.iter().map(|r| r.id.clone()).collect();
    assert!(pending.contains(&photo.id) && pending.contains(&abandoned.id));
    assert!(store
        .media_older(MediaState::Pending, now.saturating_sub(60_000), 10)
        .await
        .expect("older")
        .iter()
        .all(|r| r.id != photo.id));

    assert!(store.media_ready(&photo.id).await.expect("ready"));
    assert!(!store.media_ready(&photo.id).await.expect("ready twice"));
    let mut m = text(&a, &b, None, "look");
    m.content.media = Some(serde_json::json!({"id": photo.id, "mime": "image/png", "size": 3}));
    m.media = Some(photo.id.clone());
    let sent = store.append(m).await.expect("append");
    let got = store.media(&photo.id).await.expect("media").expect("known");
    assert_eq!(got.state, MediaState::Ready);
    assert_eq!(
        got.sent_in,
        vec![(sent.message.chat.clone(), sent.message.id)]
    );
    let ready = store
        .media_older(MediaState::Ready, later, 1000)
        .await
        .expect("older");
    assert!(ready.iter().any(|r| r.id == photo.id));
    assert!(
        ready.iter().all(|r| r.id != abandoned.id),
        "pending is not ready"
    );

    let was = store.media_expire(&photo.id).await.expect("expire");
    assert_eq!(was.map(|r| r.state), Some(MediaState::Ready));
    let stored = store
        .message(&sent.message.chat, sent.message.id)
        .await
        .expect("message")
        .expect("still there");
    assert_eq!(
        stored.content.media.as_ref().and_then(|v| v.get("expired")),
        Some(&serde_json::Value::Bool(true)),
        "the message says its media expired"
    );
    let gone = store.media(&photo.id).await.expect("media").expect("kept");
    assert_eq!(gone.state, MediaState::Expired);
    assert!(store
        .media_older(MediaState::Ready, later, 1000)
        .await
        .expect("older")
        .iter()
        .all(|r| r.id != photo.id));

    store.media_expire(&abandoned.id).await.expect("expire");
    assert_eq!(store.media(&abandoned.id).await.expect("media"), None);
    assert!(store
        .media_older(MediaState::Pending, later, 10)
        .await
        .expect("older")
        .iter()
        .all(|r| r.id != abandoned.id));
}

fn token(u: &UserId, device: &str, t: &str) -> PushToken {
    PushToken {
        user: u.clone(),
        device: DeviceId::new(device).expect("device"),
        platform: PushPlatform::Fcm,
        token: t.into(),
    }
}

/// Push tokens: one per device, one device per token, dead ones forgotten.
fn grant(user: &UserId, family: &str, hash: &str, expires_ms: u64) -> RefreshGrant {
    RefreshGrant {
        user: user.clone(),
        family: family.into(),
        token_hash: hash.into(),
        generation: "g1".into(),
        expires_ms,
    }
}

/// A far future, Unix ms.
const LATER: u64 = 4_000_000_000_000;

pub async fn a_refresh_token_rotates_once_and_a_reused_one_ends_the_session(store: &dyn Store) {
    let u = user("rf-rotate");
    store
        .refresh_save(grant(&u, "f1", "h1", LATER), 10)
        .await
        .unwrap();
    let now = 1_000;
    // The current token rotates, once.
    let r = store
        .refresh_rotate(&u, "f1", "h1", "h2", LATER, now)
        .await
        .unwrap();
    assert_eq!(r, Rotation::Rotated(grant(&u, "f1", "h1", LATER)));
    // The old one again: it leaked (or was sent twice); the session ends for both holders.
    let r = store
        .refresh_rotate(&u, "f1", "h1", "h3", LATER, now)
        .await
        .unwrap();
    assert_eq!(r, Rotation::Reused);
    let r = store
        .refresh_rotate(&u, "f1", "h2", "h4", LATER, now)
        .await
        .unwrap();
    assert_eq!(r, Rotation::Unknown, "the grant is gone");
    // Another user cannot use the family name.
    store
        .refresh_save(grant(&u, "f2", "k1", LATER), 10)
        .await
        .unwrap();
    let other = user("rf-other");
    let r = store
        .refresh_rotate(&other, "f2", "k1", "k2", LATER, now)
        .await
        .unwrap();
    assert_eq!(r, Rotation::Unknown);
    // A lapsed grant rotates no more.
    let r = store
        .refresh_rotate(&u, "f2", "k1", "k2", LATER, LATER + 1)
        .await
        .unwrap();
    assert_eq!(r, Rotation::Unknown);
    // Sign-out needs the current token.
    store
        .refresh_save(grant(&u, "f3", "m1", LATER), 10)
        .await
        .unwrap();
    assert!(!store.refresh_revoke(&u, "f3", "wrong").await.unwrap());
    assert!(store.refresh_revoke(&u, "f3", "m1").await.unwrap());
    let r = store
        .refresh_rotate(&u, "f3", "m1", "m2", LATER, now)
        .await
        .unwrap();
    assert_eq!(r, Rotation::Unknown);
}

pub async fn refresh_grants_are_bounded_per_user_and_go_with_the_user(store: &dyn Store) {
    let u = user("rf-bound");
    let rec = UserRecord {
        id: u.clone(),
        password_hash: "x".into(),
        created_ms: 1,
    };
    assert!(store.create_user(rec).await.unwrap());
    // Three sessions allowed: the fourth pushes out the one that lapses soonest.
    for (i, exp) in [
        (1, LATER + 30),
        (2, LATER + 10),
        (3, LATER + 20),
        (4, LATER + 40),
    ] {
        let g = grant(&u, &format!("f{i}"), &format!("h{i}"), exp);
        store.refresh_save(g, 3).await.unwrap();
    }
    let now = 1_000;
    let gone = store
        .refresh_rotate(&u, "f2", "h2", "x", LATER, now)
        .await
        .unwrap();
    assert_eq!(gone, Rotation::Unknown, "the soonest to lapse made room");
    for i in [1, 3, 4] {
        let (f, h) = (format!("f{i}"), format!("h{i}"));
        let r = store
            .refresh_rotate(&u, &f, &h, &format!("n{i}"), LATER, now)
            .await
            .unwrap();
        assert!(matches!(r, Rotation::Rotated(_)), "f{i}: {r:?}");
    }
    assert!(store.remove_user(&u).await.unwrap());
    let r = store
        .refresh_rotate(&u, "f1", "n1", "x", LATER, now)
        .await
        .unwrap();
    assert_eq!(
        r,
        Rotation::Unknown,
        "a removed user's sessions go with her"
    );
}

pub async fn a_push_token_has_one_owner(store: &dyn Store) {
    let (p, q) = (user("pt-alice"), user("pt-bob"));
    store.push_register(token(&p, "phone", "t1")).await.unwrap();
    store
        .push_register(token(&p, "tablet", "t2"))
        .await
        .unwrap();
    // The phone's new token replaces its old one.
    store.push_register(token(&p, "phone", "t3")).await.unwrap();
    let mine: Vec<String> = store
        .push_tokens(&p)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.token)
        .collect();
    assert_eq!(mine, ["t3", "t2"]);
    // The tablet's token moves to another account.
    store.push_register(token(&q, "tab", "t2")).await.unwrap();
    assert_eq!(store.push_tokens(&p).await.unwrap().len(), 1);
    assert_eq!(store.push_tokens(&q).await.unwrap()[0].token, "t2");
    assert!(store.push_forget(PushPlatform::Fcm, "t2").await.unwrap());
    assert!(!store.push_forget(PushPlatform::Fcm, "t2").await.unwrap());
    assert!(store.push_tokens(&q).await.unwrap().is_empty());
    // An old token freed by a replacement is no one's any more.
    assert!(!store.push_forget(PushPlatform::Fcm, "t1").await.unwrap());
    assert!(store
        .push_unregister(&p, &DeviceId::new("phone").unwrap())
        .await
        .unwrap());
    assert!(store.push_tokens(&p).await.unwrap().is_empty());
    // Removing a user removes their tokens; the token is free for someone else.
    store.push_register(token(&q, "tab", "t9")).await.unwrap();
    store.remove_user(&q).await.unwrap();
    assert!(store.push_tokens(&q).await.unwrap().is_empty());
    assert!(!store.push_forget(PushPlatform::Fcm, "t9").await.unwrap());
}

/// Push jobs: a newer message for the same chat replaces a waiting job (keeping its backoff);
/// settling an older version never drops the newer content.
pub async fn push_jobs_collapse_per_chat_and_settle_by_version(store: &dyn Store) {
    let u = user("pj-alice");
    let job = |body: &str, badge: u64, due_ms: u64| PushJob {
        user: u.clone(),
        device: DeviceId::new("phone").expect("device"),
        collapse: "d:pj-alice:pj-bob".into(),
        platform: PushPlatform::Fcm,
        token: "tok".into(),
        title: "pj-bob".into(),
        body: body.into(),
        badge,
        chat: "u/pj-bob".into(),
        msg: natter_types::MsgId(1),
        attempts: 0,
        due_ms,
        version: 0,
    };
    store.push_enqueue(vec![job("one", 1, 100)]).await.unwrap();
    let first = store.push_due(100, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store.push_due(99, 10).await.unwrap().is_empty(),
        "not due before its time"
    );
    // A retry pushes it back; a newer message collapses into it without skipping the wait.
    store
        .push_settle(&first[0], Some((1, 5_000)))
        .await
        .unwrap();
    store.push_enqueue(vec![job("two", 2, 200)]).await.unwrap();
    assert!(store.push_due(4_999, 10).await.unwrap().is_empty());
    let waiting = store.push_due(5_000, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (
            waiting[0].body.as_str(),
            waiting[0].badge,
            waiting[0].attempts
        ),
        ("two", 2, 1)
    );
    // Settling the first version leaves the second; settling the second removes it.
    store.push_settle(&first[0], None).await.unwrap();
    assert_eq!(store.push_due(5_000, 10).await.unwrap().len(), 1);
    store.push_settle(&waiting[0], None).await.unwrap();
    assert!(store.push_due(u64::MAX, 10).await.unwrap().is_empty());
}

/// Users: create, refuse a second create, change a password, list, remove.
pub async fn users_are_created_once_listed_and_removed(store: &dyn Store) {
    let rec = |id: &str| UserRecord {
        id: user(id),
        password_hash: "h1".into(),
        created_ms: 1,
    };
    assert!(store.create_user(rec("cu-b")).await.unwrap());
    assert!(store.create_user(rec("cu-a")).await.unwrap());
    assert!(
        !store.create_user(rec("cu-a")).await.unwrap(),
        "a second create must be refused"
    );
    assert!(store
        .set_password(&user("cu-a"), "h2".into())
        .await
        .unwrap());
    assert!(!store
        .set_password(&user("cu-nobody"), "h2".into())
        .await
        .unwrap());
    assert_eq!(
        store
            .user(&user("cu-a"))
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "h2"
    );
    let all = store.users().await.unwrap();
    let pos_a = all.iter().position(|u| u.as_str() == "cu-a").unwrap();
    let pos_b = all.iter().position(|u| u.as_str() == "cu-b").unwrap();
    assert!(pos_a < pos_b, "users are listed sorted");
    assert!(store.remove_user(&user("cu-a")).await.unwrap());
    assert!(!store.remove_user(&user("cu-a")).await.unwrap());
    assert!(store.user(&user("cu-a")).await.unwrap().is_none());
}

/// Removing a user forgets their inbox, chats, dedup memory and memberships (the group record
/// loses them too), so a user created again under that name starts at seq 1 with nothing.
pub async fn a_removed_user_leaves_nothing_to_a_namesake(store: &dyn Store) {
    let (erin, bob) = (user("rm-erin"), user("rm-bob"));
    let rec = |id: &UserId| UserRecord {
        id: id.clone(),
        password_hash: "h".into(),
        created_ms: 1,
    };
    assert!(store.create_user(rec(&erin)).await.unwrap());
    assert!(store.create_user(rec(&bob)).await.unwrap());
    store.append(text(&bob, &erin, None, "one")).await.unwrap();
    store
        .append(text(&erin, &bob, Some("c1"), "two"))
        .await
        .unwrap();
    let g = GroupRecord {
        id: GroupId::new("rm-group").unwrap(),
        name: "g".into(),
        created_by: erin.clone(),
        created_ms: 1,
        members: vec![
            Member {
                user: erin.clone(),
                admin: true,
                joined_ms: 1,
            },
            Member {
                user: bob.clone(),
                admin: false,
                joined_ms: 1,
            },
        ],
        invited: Vec::new(),
    };
    let mut made = text(&erin, &erin, None, "made");
    made.chat = ChatKey::from_stored(format!("g:{}", g.id));
    made.readers = vec![erin.clone(), bob.clone()];
    made.content.kind = "system".into();
    made.group_update = Some(g.clone());
    store.append(made).await.unwrap();
    assert!(store.remove_user(&erin).await.unwrap());
    assert!(
        store.groups_of(&erin).await.unwrap().is_empty(),
        "no memberships"
    );
    let left = store.group(&g.id).await.unwrap().unwrap();
    assert!(
        left.member(&erin).is_none(),
        "the group no longer lists them"
    );
    assert!(
        left.member(&bob).is_some_and(|m| m.admin),
        "the oldest member is admin now"
    );
    assert!(store.create_user(rec(&erin)).await.unwrap());
    let (inbox, _) = store.sync(&erin, 0, 100).await.unwrap();
    assert!(inbox.is_empty(), "no old inbox");
    assert!(store.chats(&erin).await.unwrap().is_empty(), "no old chats");
    let again = store
        .append(text(&erin, &bob, Some("c1"), "new"))
        .await
        .unwrap();
    assert!(!again.duplicate, "the old dedup memory is gone");
    let seq = again.seqs.iter().find(|(u, _)| *u == erin).map(|(_, s)| *s);
    assert_eq!(seq, Some(1), "the new account's inbox starts at 1");
    // Bob keeps what he had.
    let (bobs, _) = store.sync(&bob, 0, 100).await.unwrap();
    assert_eq!(bobs.len(), 4);
}

/// One message, two readers: each inbox gets seq 1, then 2.
pub async fn a_message_lands_in_both_inboxes_with_gap_free_seqs(store: &dyn Store) {
    let (a, b) = (user("in-alice"), user("in-bob"));
    let first = store.append(text(&a, &b, Some("c1"), "hi")).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.seqs, vec![(a.clone(), 1), (b.clone(), 1)]);
    let second = store
        .append(text(&b, &a, Some("c1"), "hello"))
        .await
        .unwrap();
    assert_eq!(second.seqs, vec![(b.clone(), 2), (a.clone(), 2)]);
    assert!(
        second.message.id > first.message.id,
        "ids grow in chat order"
    );
    let (items, more) = store.sync(&b, 0, 100).await.unwrap();
    assert!(!more);
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(items[0].message.content.body, "hi");
    assert_eq!(items[1].message.from, b);
    assert!(store.in_chat(&a, &ChatKey::direct(&a, &b)).await.unwrap());
    assert!(!store
        .in_chat(&a, &ChatKey::direct(&a, &user("in-carol")))
        .await
        .unwrap());
}

/// The same `(sender, cid)` twice: same id, nothing new in any inbox.
pub async fn a_resent_cid_returns_the_first_message_and_writes_nothing(store: &dyn Store) {
    let (a, b) = (user("dd-alice"), user("dd-bob"));
    let first = store
        .append(text(&a, &b, Some("same"), "once"))
        .await
        .unwrap();
    let again = store
        .append(text(&a, &b, Some("same"), "once"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert!(again.seqs.is_empty());
    assert_eq!(again.message.id, first.message.id);
    let (items, _) = store.sync(&b, 0, 100).await.unwrap();
    assert_eq!(items.len(), 1);
    // Another sender may use the same cid.
    let other = store
        .append(text(&b, &a, Some("same"), "mine"))
        .await
        .unwrap();
    assert!(!other.duplicate);
}

/// 10 senders × 30 messages at once to one reader: 300 distinct ids, seqs 1..=300.
pub async fn concurrent_sends_get_unique_ids_and_gap_free_seqs(store: Arc<dyn Store>) {
    let reader = user("cc-reader");
    let mut tasks = Vec::new();
    for s in 0..10 {
        let store = store.clone();
        let reader = reader.clone();
        tasks.push(tokio::spawn(async move {
            let from = user(&format!("cc-sender{s}"));
            for i in 0..30 {
                store
                    .append(text(&from, &reader, Some(&format!("m{i}")), "x"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (items, more) = store.sync(&reader, 0, 1000).await.unwrap();
    assert!(!more);
    assert_eq!(items.len(), 300);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.seq, i as u64 + 1, "seqs have no gaps");
    }
    let ids: HashSet<_> = items.iter().map(|i| i.message.id).collect();
    assert_eq!(ids.len(), 300, "ids are unique");
}

/// `sync` with a limit says whether more follow, and continues after the last seq.
pub async fn sync_pages_with_a_limit(store: &dyn Store) {
    let (a, b) = (user("pg-alice"), user("pg-bob"));
    for i in 0..5 {
        store
            .append(text(&a, &b, Some(&format!("p{i}")), &format!("{i}")))
            .await
            .unwrap();
    }
    let (page, more) = store.sync(&b, 0, 2).await.unwrap();
    assert!(more);
    assert_eq!(page.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![1, 2]);
    let (page, more) = store.sync(&b, 2, 2).await.unwrap();
    assert!(more);
    assert_eq!(page[0].message.content.body, "2");
    let (page, more) = store.sync(&b, 4, 2).await.unwrap();
    assert!(!more);
    assert_eq!(page.len(), 1);
    let (page, more) = store.sync(&b, 5, 2).await.unwrap();
    assert!(page.is_empty() && !more);
}

/// `history` returns newest first and pages with `before`.
pub async fn history_is_newest_first_and_pages_by_id(store: &dyn Store) {
    let (a, b) = (user("hi-alice"), user("hi-bob"));
    for i in 0..5 {
        store
            .append(text(&a, &b, None, &format!("{i}")))
            .await
            .unwrap();
    }
    let chat = ChatKey::direct(&a, &b);
    let (page, more) = store.history(&chat, None, 3).await.unwrap();
    assert!(more);
    let bodies: Vec<_> = page.iter().map(|m| m.content.body.as_str()).collect();
    assert_eq!(bodies, vec!["4", "3", "2"]);
    let (page, more) = store.history(&chat, Some(page[2].id), 3).await.unwrap();
    assert!(!more);
    let bodies: Vec<_> = page.iter().map(|m| m.content.body.as_str()).collect();
    assert_eq!(bodies, vec!["1", "0"]);
    let (none, _) = store
        .history(&ChatKey::direct(&a, &user("hi-nobody")), None, 3)
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// `chats` lists each chat once, newest first, with unread counts of others' messages.
pub async fn chats_list_last_message_and_unread(store: &dyn Store) {
    let (a, b, c) = (user("ch-alice"), user("ch-bob"), user("ch-carol"));
    store.append(text(&b, &a, None, "b1")).await.unwrap();
    store.append(text(&b, &a, None, "b2")).await.unwrap();
    store.append(text(&a, &b, None, "a1")).await.unwrap();
    store.append(text(&c, &a, None, "c1")).await.unwrap();
    let list = store.chats(&a).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].chat, ChatKey::direct(&a, &c));
    assert_eq!(list[0].last.content.body, "c1");
    assert_eq!(list[0].unread, 1);
    assert_eq!(list[1].last.content.body, "a1");
    // Alice's own message does not count, but it does not clear Bob's either (reads do that).
    assert_eq!(list[1].unread, 0);
    let bob = store.chats(&b).await.unwrap();
    assert_eq!(bob[0].unread, 1);
}

/// Purging forgets cids older than the cut-off, so they may be used again.
pub async fn dedup_purge_forgets_old_cids(store: &dyn Store) {
    let (a, b) = (user("pu-alice"), user("pu-bob"));
    store.append(text(&a, &b, Some("old"), "1")).await.unwrap();
    let far_future = u64::MAX / 2;
    assert!(store.purge_dedup(far_future).await.unwrap() >= 1);
    let again = store.append(text(&a, &b, Some("old"), "1")).await.unwrap();
    assert!(!again.duplicate, "a purged cid is new again");
}

/// A group record is written with the message that announces it, and the membership index
/// follows every change.
pub async fn a_group_changes_with_its_system_message(store: &dyn Store) {
    let (a, b, c) = (user("gr-alice"), user("gr-bob"), user("gr-carol"));
    let id = GroupId::new("gr-team").unwrap();
    let member = |u: &UserId, admin| Member {
        user: u.clone(),
        admin,
        joined_ms: 1,
    };
    let mut g = GroupRecord {
        id: id.clone(),
        name: "team".into(),
        created_by: a.clone(),
        created_ms: 1,
        members: vec![member(&a, true), member(&b, false), member(&c, false)],
        invited: Vec::new(),
    };
    let announce = |g: &GroupRecord, readers: Vec<UserId>, body: &str| NewMessage {
        chat: ChatKey::from_stored(format!("g:{}", g.id)),
        from: a.clone(),
        dev: DeviceId::new("phone").unwrap(),
        cid: None,
        readers,
        content: Content {
            kind: "system".into(),
            body: body.into(),
            media: None,
            reply_to: None,
            ttl: None,
            event: None,
        },
        group_update: Some(g.clone()),
        media: None,
    };
    let m = store
        .append(announce(
            &g,
            vec![a.clone(), b.clone(), c.clone()],
            "created",
        ))
        .await
        .unwrap();
    assert_eq!(m.seqs.len(), 3);
    assert_eq!(store.group(&id).await.unwrap().unwrap(), g);
    assert_eq!(store.groups_of(&c).await.unwrap(), vec![id.clone()]);
    g.members.retain(|m| m.user != c);
    store
        .append(announce(
            &g,
            vec![a.clone(), b.clone(), c.clone()],
            "carol removed",
        ))
        .await
        .unwrap();
    assert!(
        store.groups_of(&c).await.unwrap().is_empty(),
        "carol is out"
    );
    assert_eq!(store.groups_of(&b).await.unwrap(), vec![id.clone()]);
    assert_eq!(store.group(&id).await.unwrap().unwrap().members.len(), 2);
    assert!(store
        .group(&GroupId::new("gr-none").unwrap())
        .await
        .unwrap()
        .is_none());
}

/// A receipt status is reached once: a second device's ack, or a late `delivered` after
/// `read`, changes nothing.
pub async fn receipts_are_raised_once(store: &dyn Store) {
    let (a, b) = (user("rc-alice"), user("rc-bob"));
    let m = store
        .append(text(&a, &b, Some("r1"), "hi"))
        .await
        .unwrap()
        .message;
    let mk = |status| ReceiptMark {
        chat: m.chat.clone(),
        id: m.id,
        user: b.clone(),
        status,
    };
    assert_eq!(
        store
            .mark(vec![mk(ReceiptStatus::Delivered)])
            .await
            .unwrap(),
        vec![true]
    );
    assert_eq!(
        store
            .mark(vec![mk(ReceiptStatus::Delivered)])
            .await
            .unwrap(),
        vec![false]
    );
    assert_eq!(
        store
            .mark(vec![mk(ReceiptStatus::Read), mk(ReceiptStatus::Delivered)])
            .await
            .unwrap(),
        vec![true, false]
    );
}

/// Reading up to a seq reports the messages from others it passes, once, and counts down the
/// chat's unread; it never moves back.
pub async fn the_read_pointer_moves_forward_and_counts_down_unread(store: &dyn Store) {
    let (a, b) = (user("rp-alice"), user("rp-bob"));
    let mut seqs = Vec::new();
    for i in 0..3 {
        let ap = store
            .append(text(&a, &b, None, &format!("m{i}")))
            .await
            .unwrap();
        seqs.push(ap.seqs.iter().find(|(u, _)| *u == b).unwrap().1);
    }
    let chat = ChatKey::direct(&a, &b);
    assert_eq!(store.chats(&b).await.unwrap()[0].unread, 3);
    let r = store.read_upto(&b, &chat, seqs[1]).await.unwrap();
    let bodies: Vec<_> = r
        .newly_read
        .iter()
        .map(|m| m.content.body.as_str())
        .collect();
    assert_eq!(bodies, ["m0", "m1"]);
    assert_eq!(r.unread, 1);
    assert_eq!(store.chats(&b).await.unwrap()[0].unread, 1);
    let again = store.read_upto(&b, &chat, seqs[0]).await.unwrap();
    assert!(again.newly_read.is_empty(), "the pointer never moves back");
    assert_eq!(again.read_seq, seqs[1]);
    let rest = store.read_upto(&b, &chat, u64::MAX).await.unwrap();
    assert_eq!(rest.newly_read.len(), 1);
    assert_eq!(rest.unread, 0);
    assert_eq!(rest.read_seq, seqs[2], "clamped to the last message");
    // Alice's own messages are never unread for her.
    assert!(store
        .read_upto(&a, &chat, u64::MAX)
        .await
        .unwrap()
        .newly_read
        .is_empty());
}
