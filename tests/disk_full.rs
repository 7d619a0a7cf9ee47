//! A full disk: sends are refused with a clear error (nothing half-stored), the connection stays
//! up, and once space is back, sending works again with no gaps.

// An integration test: helpers (tests/common) are not `#[test]` functions, so clippy.toml
// does not cover them; a failed step fails the test loudly, by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{connect, Server};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::json;

/// Mounts a small tmpfs at `dir`; `false` where this machine does not allow mounts.
fn mount_small_disk(dir: &Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    mnt: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (and a SKIPPED line) where this machine does not allow mounts.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        if !mount_small_disk(&mnt, size) {
            eprintln!("SKIPPED: this machine does not allow mounting a tmpfs (needs root)");
            return None;
        }
        Some(SmallDisk { mnt, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Fills the disk holding `dir` with a filler file until it refuses more.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test]
async fn a_full_disk_refuses_sends_clearly_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount("16m") else {
        return;
    };
    let mnt = &disk.mnt;
    // Only the disk may refuse: 400 sends of 60 KB (more than the 16 MB disk holds) fit in the
    // message rate. The store's journal may have room set aside on the disk before the filler
    // came, so the refusal comes whenever that room is used up.
    let s = Server::start_on_data_dir_with(
        &mnt.join("data"),
        "[limits]\nmessages_per_sec = 10000.0\nmessages_burst = 10000\n",
    );
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    alice
        .send("u/bob", json!({"cid": "before", "body": "fits"}))
        .await;

    let filler = fill(mnt);
    let body = "y".repeat(60_000);
    let mut refused = None;
    let mut acked = 1;
    for i in 0..400 {
        let r = alice
            .publish(
                "m/u/bob",
                json!({"cid": format!("f{i}"), "body": body}).to_string(),
            )
            .await;
        if r == PubAckReason::Success {
            acked += 1;
            continue;
        }
        refused = Some(r);
        break;
    }
    assert_eq!(
        refused,
        Some(PubAckReason::UnspecifiedError),
        "a full disk must refuse a send"
    );
    let mut err = alice.recv("d/alice/phone").await;
    while err.get("topic").is_none() {
        err = alice.recv("d/alice/phone").await;
    }
    assert_eq!(err["error"]["code"], "unavailable", "{err}");
    assert!(alice.still_connected().await);

    std::fs::remove_file(filler).unwrap();
    alice
        .send("u/bob", json!({"cid": "after", "body": "space again"}))
        .await;
    acked += 1;
    let mut bob = connect(s.mqtt, "bob", "phone", "pw").await;
    bob.subscribe_all().await;
    let inbox = bob.sync_all(0).await;
    assert_eq!(
        inbox.len(),
        acked,
        "every acknowledged send is stored, the refused one is not: {:?}",
        inbox
            .iter()
            .map(|m| (m["seq"].clone(), m["cid"].clone()))
            .collect::<Vec<_>>()
    );
    for (i, m) in inbox.iter().enumerate() {
        assert_eq!(m["seq"].as_u64().unwrap(), i as u64 + 1);
    }
    assert_eq!(inbox.last().unwrap()["body"], "space again");
}

#[tokio::test]
async fn an_upload_to_a_full_disk_is_refused_and_leaves_nothing_behind() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let mnt = &disk.mnt;
    let s = Server::start_with_users(
        &format!("[media]\ndir = {:?}\n", mnt.display().to_string()),
        &["alice", "bob"],
    );
    let mut alice = connect(s.mqtt, "alice", "phone", "pw").await;
    alice.subscribe_all().await;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut upload = async |size: usize| {
        let a = alice
            .request("media.upload", json!({"mime": "video/mp4", "size": size}))
            .await;
        assert_eq!(a["ok"], true, "{a}");
        let mut resp = agent
            .put(a["url"].as_str().unwrap())
            .header("content-type", "video/mp4")
            .send(&vec![7u8; size][..])
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
        (status, body, a["media"].as_str().unwrap().to_owned())
    };
    let (status, body, id) = upload(8 << 20).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (507, &json!("disk_full")),
        "{body}"
    );
    assert_eq!(
        std::fs::read_dir(mnt).unwrap().count(),
        0,
        "nothing of the refused upload is left on the disk"
    );
    let (status, _, small) = upload(100_000).await;
    assert_eq!(status, 200, "a smaller upload still fits");
    for (media, want) in [
        (&id, PubAckReason::PayloadFormatInvalid),
        (&small, PubAckReason::Success),
    ] {
        let r = alice
            .publish(
                "m/u/bob",
                json!({"type": "video", "media": {"id": media}}).to_string(),
            )
            .await;
        assert_eq!(r, want);
    }
}
