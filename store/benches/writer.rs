//! The embedded store alone, on a real file with real syncs: how many one-to-one sends, each
//! followed by its recipient's `delivered` mark (what a message costs the store in natter's
//! `direct` benchmark), the writer thread commits per second, by how many are in flight at once.
//!
//! `cargo bench -p natter-store --bench writer`. Throughput is in sends per second. The store
//! grows through the run, as a server's does.

// A benchmark harness: a failed setup step should stop the run loudly, as in a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use natter_store::embedded::{EmbeddedOptions, EmbeddedStore};
use natter_store::{conformance, ReceiptMark, ReceiptStatus, Store};
use natter_types::UserId;

/// Pairs of users: sender `s{i}` writes to `r{i}`, as `natter-bench direct` pairs them.
const PAIRS: usize = 100;
/// About the size of `natter-bench`'s default 100-byte payloads.
const BODY: &str = "a hundred bytes of text, give or take, as the benchmark's payloads are sized";

fn send_and_mark(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        EmbeddedStore::open(&dir.path().join("store"), EmbeddedOptions::default()).expect("store"),
    );
    let pairs: Vec<(UserId, UserId)> = (0..PAIRS)
        .map(|i| {
            let user = |p: &str| UserId::new(&format!("{p}{i}")).expect("user id");
            (user("s"), user("r"))
        })
        .collect();
    // Every send has a cid of its own, as a client's would.
    let mut sent = 0u64;
    let mut group = c.benchmark_group("send_and_mark");
    for in_flight in [1usize, 10, 100] {
        group.throughput(Throughput::Elements(in_flight as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(in_flight),
            &in_flight,
            |b, &n| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut tasks = tokio::task::JoinSet::new();
                        for (from, to) in pairs.iter().take(n) {
                            sent += 1;
                            let msg = conformance::text(from, to, Some(&sent.to_string()), BODY);
                            let (store, to) = (store.clone(), to.clone());
                            tasks.spawn(async move {
                                let sent = store.append(msg).await.expect("append");
                                let mark = ReceiptMark {
                                    chat: sent.message.chat,
                                    id: sent.message.id,
                                    user: to,
                                    status: ReceiptStatus::Delivered,
                                };
                                store.mark(vec![mark]).await.expect("mark");
                            });
                        }
                        while let Some(done) = tasks.join_next().await {
                            done.expect("send task");
                        }
                    })
                })
            },
        );
    }
    group.finish();
}

/// One message to a group of 1,000: one transaction with an inbox entry, a seq and a chat
/// summary per member (what `natter-bench group` waits on before any member can have it).
fn group_send(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        EmbeddedStore::open(&dir.path().join("store"), EmbeddedOptions::default()).expect("store");
    let members: Vec<UserId> = (0..1000)
        .map(|i| UserId::new(&format!("m{i}")).expect("user id"))
        .collect();
    let chat = natter_types::ChatKey::from_stored("g:g1".into());
    let mut group = c.benchmark_group("group_send");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1000", |b| {
        b.iter(|| {
            let mut msg = conformance::text(&members[0], &members[1], None, "to the group");
            msg.chat = chat.clone();
            msg.readers = members.clone();
            rt.block_on(store.append(msg)).expect("append")
        })
    });
    group.finish();
}

criterion_group!(benches, send_and_mark, group_send);
criterion_main!(benches);
