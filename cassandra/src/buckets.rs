//! How rows are spread over partitions, so that no partition grows without bound.
//!
//! Cassandra keeps a partition on one set of replicas and reads it as a unit, so a chat that has
//! been busy for years must not be one partition. As in Discord's message store, a chat's
//! messages are cut into fixed windows of time (`bucket`), and an inbox into fixed runs of seqs.
//! These constants are part of the schema: changing one would lose every row already written
//! under the old cut, so a change needs a new schema version that moves the rows.

use natter_types::MsgId;

/// Milliseconds of messages one chat partition holds: 10 days, as Discord chose; a chat would
/// need ~100 messages a second for ten days to reach Cassandra's comfortable partition size.
pub const MESSAGE_BUCKET_MS: u64 = 10 * 24 * 3600 * 1000;

/// Inbox entries per user partition. An entry is ~60 bytes, so a partition stays < 1 MB.
pub const INBOX_BUCKET_SEQS: u64 = 10_000;

/// Milliseconds per `dedup_by_hour` partition, the index the cid purge walks.
pub const DEDUP_BUCKET_MS: u64 = 3600 * 1000;

/// Milliseconds per `media_index` partition (a day of uploads).
pub const MEDIA_BUCKET_MS: u64 = 24 * 3600 * 1000;

/// The message bucket of a message, from the time in its ULID id.
pub fn message_bucket(id: MsgId) -> i32 {
    bucket_of_ms(id.timestamp_ms(), MESSAGE_BUCKET_MS)
}

/// The inbox bucket of a seq.
pub fn inbox_bucket(seq: u64) -> i64 {
    (seq / INBOX_BUCKET_SEQS) as i64
}

/// The bucket of Unix time `ms` for buckets `size` ms wide (saturating, never negative).
pub fn bucket_of_ms(ms: u64, size: u64) -> i32 {
    (ms / size).min(i32::MAX as u64) as i32
}

/// A message id as its blob: 16 bytes big-endian, so that byte order (how Cassandra sorts
/// blobs) is id order, which is time order.
pub fn id_blob(id: MsgId) -> Vec<u8> {
    id.0.to_be_bytes().to_vec()
}

/// The id a blob written by [`id_blob`] holds.
pub fn blob_id(b: &[u8]) -> Option<MsgId> {
    let bytes: [u8; 16] = b.try_into().ok()?;
    Some(MsgId(u128::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_sort_like_ids() {
        let ids = [
            MsgId(1),
            MsgId(255),
            MsgId(256),
            MsgId(1 << 80),
            MsgId(u128::MAX),
        ];
        for w in ids.windows(2) {
            assert!(id_blob(w[0]) < id_blob(w[1]), "{:?} {:?}", w[0], w[1]);
            assert_eq!(blob_id(&id_blob(w[0])), Some(w[0]));
        }
        assert_eq!(blob_id(&[1, 2, 3]), None);
    }

    #[test]
    fn a_message_falls_in_the_ten_day_window_of_its_id() {
        let ms = 1_700_000_000_000u64;
        let id = MsgId(ulid::Ulid::from_parts(ms, 7).0);
        assert_eq!(message_bucket(id) as u64, ms / MESSAGE_BUCKET_MS);
        let later = MsgId(ulid::Ulid::from_parts(ms + MESSAGE_BUCKET_MS, 0).0);
        assert_eq!(message_bucket(later), message_bucket(id) + 1);
    }

    #[test]
    fn inbox_buckets_hold_a_fixed_run_of_seqs() {
        assert_eq!(inbox_bucket(0), 0);
        assert_eq!(inbox_bucket(INBOX_BUCKET_SEQS - 1), 0);
        assert_eq!(inbox_bucket(INBOX_BUCKET_SEQS), 1);
        assert_eq!(bucket_of_ms(u64::MAX, 1), i32::MAX);
    }
}
