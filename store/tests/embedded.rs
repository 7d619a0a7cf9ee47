//! The embedded backend against the conformance suite, plus what only a file-backed store can
//! show: data survives closing and reopening.

use std::sync::Arc;

use natter_store::embedded::{EmbeddedOptions, EmbeddedStore};
use natter_store::{conformance, Store};
use natter_types::UserId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store"), EmbeddedOptions::default()).unwrap();
    conformance::run_all(Arc::new(store)).await;
}

/// Opens the store at `path` again once the one dropped before has let go of it (its writer
/// thread holds the database until its channel closes); at most 10 s.
async fn reopen(path: &std::path::Path) -> EmbeddedStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(path, EmbeddedOptions::default()) {
            Ok(s) => return s,
            Err(e) if std::time::Instant::now() > deadline => panic!("store not re-opened: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (a, b) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    {
        let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
        store
            .append(conformance::text(&a, &b, Some("c"), "kept"))
            .await
            .unwrap();
    }
    let store = reopen(&path).await;
    let (items, _) = store.sync(&b, 0, 10).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].message.content.body, "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_store_reopens_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (a, b) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    {
        let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
        for i in 0..400 {
            store
                .append(conformance::text(&a, &b, Some(&format!("c{i}")), "kept"))
                .await
                .unwrap();
        }
        store.checkpoint().await.unwrap();
        // Written after the checkpoint: only in the journal.
        store
            .append(conformance::text(&b, &a, Some("late"), "after"))
            .await
            .unwrap();
    }
    let store = reopen(&path).await;
    let (items, more) = store.sync(&b, 0, 1000).await.unwrap();
    assert_eq!((items.len(), more), (401, false));
    assert_eq!(items[399].message.cid.as_deref(), Some("c399"));
    assert_eq!(items[400].message.content.body, "after");
    let chats = store.chats(&b).await.unwrap();
    assert_eq!((chats.len(), chats[0].unread), (1, 0), "bob wrote last");
}
