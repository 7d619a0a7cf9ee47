//! Delivered receipts from device acks, gathered into one store write.
//!
//! Every device PUBACK of a message is a `delivered` mark to record before the sender is told
//! (the store decides "once per recipient user"). Recorded one by one, each was a store job of
//! its own, awaited inside rmqtt's acked hook: the device's connection, which rmqtt handles one
//! packet at a time, stood still for a commit per ack. Now acks are queued and one task records
//! them: every ack waiting when it starts goes into one store write, and while that write runs
//! the next ones gather. Alone, an ack is recorded at once; under load, many share a write
//! (and a chat's marks share a page of the receipts table). A timed gathering window was
//! tried and dropped: 10 ms gave no more throughput and added those 10 ms to receipts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use natter_store::{ReceiptMark, ReceiptStatus, Store};
use natter_types::{clock::now_ms, ChatKey, MsgId, UserId};
use tokio::sync::mpsc;

use crate::outbound::{Outbox, Receipt};
use crate::wire::Receipted;

/// Most marks in one store write.
const BATCH: usize = 4096;
/// Acks waiting; past it, an ack waits for room (its device's connection with it).
const QUEUE: usize = 65_536;

/// One device's ack of a message from someone else.
pub(crate) struct Ack {
    /// The chat, as stored.
    pub chat: ChatKey,
    /// The message.
    pub id: MsgId,
    /// Its sender, who gets the receipt.
    pub from: UserId,
    /// The sender's client id for it, echoed in the receipt.
    pub cid: Option<String>,
    /// The recipient whose device acknowledged it.
    pub by: UserId,
}

/// The queue of acks and the task that records them.
pub(crate) struct Delivered {
    tx: mpsc::Sender<Ack>,
    /// Acks queued and not yet recorded (and told); shutdown waits for them.
    pending: Arc<AtomicUsize>,
}

impl Delivered {
    /// Starts the recording task; needs a tokio runtime.
    pub(crate) fn start(store: Arc<dyn Store>, outbox: Outbox) -> Delivered {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(record(store, outbox, rx, pending.clone()));
        Delivered { tx, pending }
    }

    /// Queues an ack; returns at once unless [`QUEUE`] acks are already waiting.
    pub(crate) async fn ack(&self, ack: Ack) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(ack).await.is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("delivered receipt dropped: the recorder stopped");
        }
    }

    /// Acks queued and not yet recorded.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Records every waiting ack in one store write, then tells the senders; again and again.
async fn record(
    store: Arc<dyn Store>,
    outbox: Outbox,
    mut rx: mpsc::Receiver<Ack>,
    pending: Arc<AtomicUsize>,
) {
    let mut acks = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut acks, BATCH).await > 0 {
        let n = acks.len();
        let marks = acks
            .iter()
            .map(|a| ReceiptMark {
                chat: a.chat.clone(),
                id: a.id,
                user: a.by.clone(),
                status: ReceiptStatus::Delivered,
            })
            .collect();
        match store.mark(marks).await {
            Ok(fresh) => {
                let now = now_ms();
                for (a, new) in acks.iter().zip(fresh) {
                    if new {
                        let about = Receipted {
                            chat: &a.chat,
                            from: &a.from,
                            id: a.id,
                            cid: a.cid.as_deref(),
                        };
                        outbox.receipt(about, Receipt::Delivered(&a.by), now).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, receipts = n, "delivered receipts not recorded"),
        }
        acks.clear();
        pending.fetch_sub(n, Ordering::SeqCst);
    }
}
