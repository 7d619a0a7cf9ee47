//! Fills an embedded store with one-to-one messages, for measuring what a full store costs
//! (opening it, disk bytes per message, a server's rate on it).
//!
//! `cargo run --release -p natter-store --example fill -- DIR MESSAGES [USERS]`: appends
//! MESSAGES messages (100-byte bodies, each with a cid) between random pairs of USERS users
//! (default 10,000) to the store in DIR (`{data_dir}/store` for a server), 256 in flight, and
//! prints the rate and the store's size on disk.

// A measuring tool: a failed step should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use natter_store::embedded::{EmbeddedOptions, EmbeddedStore};
use natter_store::{conformance, Store};
use natter_types::UserId;

const BODY: &str = "a hundred bytes of text, give or take, as the benchmark's payloads are sized";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("DIR");
    let total: u64 = args.get(2).expect("MESSAGES").parse().expect("a number");
    let users: u64 = args.get(3).map_or(10_000, |u| u.parse().expect("a number"));
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.as_ref(), EmbeddedOptions::default()).expect("store"));
    let ids: Arc<Vec<UserId>> = Arc::new(
        (0..users)
            .map(|i| UserId::new(&format!("u{i}")).expect("id"))
            .collect(),
    );
    let started = Instant::now();
    let lanes = 256u64;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let (store, ids) = (store.clone(), ids.clone());
        tasks.spawn(async move {
            let mut n = lane;
            let mut x = lane.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while n < total {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let a = (x % users) as usize;
                let b = ((x / users) % users) as usize;
                let b = if a == b { (b + 1) % users as usize } else { b };
                let msg = conformance::text(&ids[a], &ids[b], Some(&format!("f{n}")), BODY);
                loop {
                    match store.append(msg.clone()).await {
                        Ok(_) => break,
                        Err(natter_store::StoreError::Busy) => tokio::task::yield_now().await,
                        Err(e) => panic!("append: {e}"),
                    }
                }
                n += lanes;
                if lane == 0 && n % 1_000_000 < lanes {
                    eprintln!("{n} messages, {:.0} s", started.elapsed().as_secs_f64());
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("lane");
    }
    let secs = started.elapsed().as_secs_f64();
    drop(store);
    println!(
        "{total} messages in {secs:.1} s: {:.0} msg/s",
        total as f64 / secs
    );
}
