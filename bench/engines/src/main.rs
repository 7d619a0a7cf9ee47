//! Issue 18's engine comparison: the chat store's write path modelled on redb, fjall and rocksdb.
//!
//! The same logical layout on each engine (four tables / keyspaces / column families):
//!   messages  (chat 16 B, id 16 B)          -> ~250 B message
//!   dedup     (sender 8 B, client id 12 B)  -> 60 B (point-read before each write)
//!   inbox     (user 8 B, seq 8 B)           -> (chat, id) 32 B
//!   chat_idx  (user 8 B, chat 16 B, seq 8 B) -> id + 24 B = 40 B
//! One writer thread; a batch of messages is committed atomically and made durable (fsync or
//! fdatasync, per engine) before the next one starts. See README.md.
//!
//! Usage: natter-engine-eval <redb|fjall|rocksdb> <empty|preload|full|open> <data dir> [options]
//!   --secs S        seconds per measured run (5)
//!   --messages N    messages to preload (1000000)
//!   --users N       users (10000)
//!   --sync all|data fjall's PersistMode for durable commits (all = SyncAll, data = SyncData)

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const T_MSG: usize = 0;
const T_DEDUP: usize = 1;
const T_INBOX: usize = 2;
const T_CHAT_IDX: usize = 3;
const TABLES: [&str; 4] = ["messages", "dedup", "inbox", "chat_idx"];

/// One atomic commit: dedup keys to read first, then the rows to put.
#[derive(Default)]
struct Batch {
    checks: Vec<Vec<u8>>,
    puts: Vec<(usize, Vec<u8>, Vec<u8>)>,
}

impl Batch {
    fn clear(&mut self) {
        self.checks.clear();
        self.puts.clear();
    }
}

trait Engine {
    /// Reads every dedup key (point lookups), then writes all rows in one atomic commit;
    /// `durable`: the commit is on disk when this returns. Returns how many dedup keys existed.
    fn commit(&mut self, b: &Batch, durable: bool) -> Res<usize>;
    /// The highest inbox seq of `user` (reverse range scan, one item).
    fn last_seq(&self, user: u64) -> Res<Option<u64>>;
    /// The last `n` inbox entries of `user`, newest first (reverse range scan). Returns the count.
    fn scan_inbox(&self, user: u64, n: usize) -> Res<usize>;
    /// Makes everything written so far durable (after a preload without sync).
    fn sync(&mut self) -> Res<()>;
}

fn user_key(u: u64) -> [u8; 8] {
    u.to_be_bytes()
}

fn inbox_range(user: u64) -> (Vec<u8>, Vec<u8>) {
    let mut lo = user_key(user).to_vec();
    lo.extend_from_slice(&[0u8; 8]);
    let mut hi = user_key(user).to_vec();
    hi.extend_from_slice(&[0xffu8; 8]);
    (lo, hi)
}

fn seq_of_inbox_key(k: &[u8]) -> u64 {
    let mut s = [0u8; 8];
    s.copy_from_slice(&k[8..16]);
    u64::from_be_bytes(s)
}

// ---------------------------------------------------------------- redb
#[cfg(feature = "redb")]
mod redb_engine {
    use super::*;
    use redb::{Database, Durability, ReadableTable, TableDefinition};

    const DEFS: [TableDefinition<&[u8], &[u8]>; 4] = [
        TableDefinition::new("messages"),
        TableDefinition::new("dedup"),
        TableDefinition::new("inbox"),
        TableDefinition::new("chat_idx"),
    ];

    pub struct RedbEngine {
        db: Database,
    }

    impl RedbEngine {
        pub fn open(dir: &Path) -> Res<Self> {
            std::fs::create_dir_all(dir)?;
            let db = Database::create(dir.join("store.redb"))?;
            let tx = db.begin_write()?;
            for d in DEFS {
                tx.open_table(d)?;
            }
            tx.commit()?;
            Ok(RedbEngine { db })
        }
    }

    impl Engine for RedbEngine {
        fn commit(&mut self, b: &Batch, durable: bool) -> Res<usize> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(if durable { Durability::Immediate } else { Durability::None });
            let mut found = 0;
            {
                let mut tables = [
                    tx.open_table(DEFS[0])?,
                    tx.open_table(DEFS[1])?,
                    tx.open_table(DEFS[2])?,
                    tx.open_table(DEFS[3])?,
                ];
                for k in &b.checks {
                    if tables[T_DEDUP].get(k.as_slice())?.is_some() {
                        found += 1;
                    }
                }
                for (t, k, v) in &b.puts {
                    tables[*t].insert(k.as_slice(), v.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(found)
        }

        fn last_seq(&self, user: u64) -> Res<Option<u64>> {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(DEFS[T_INBOX])?;
            let (lo, hi) = inbox_range(user);
            let r = t.range(lo.as_slice()..=hi.as_slice())?.next_back();
            Ok(match r {
                Some(kv) => Some(seq_of_inbox_key(kv?.0.value())),
                None => None,
            })
        }

        fn scan_inbox(&self, user: u64, n: usize) -> Res<usize> {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(DEFS[T_INBOX])?;
            let (lo, hi) = inbox_range(user);
            let mut c = 0;
            for kv in t.range(lo.as_slice()..=hi.as_slice())?.rev().take(n) {
                let (k, v) = kv?;
                std::hint::black_box((k.value().len(), v.value().len()));
                c += 1;
            }
            Ok(c)
        }

        fn sync(&mut self) -> Res<()> {
            // An empty Immediate commit makes the earlier Durability::None commits durable.
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::Immediate);
            tx.commit()?;
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- fjall
#[cfg(feature = "fjall")]
mod fjall_engine {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    pub struct FjallEngine {
        db: Database,
        ks: Vec<Keyspace>,
        mode: PersistMode,
    }

    impl FjallEngine {
        pub fn open(dir: &Path, sync_data: bool) -> Res<Self> {
            std::fs::create_dir_all(dir)?;
            // Defaults: journal ≤ 512 MiB, lz4 blocks, background flush/compaction workers.
            // manual_journal_persist: db.batch() otherwise flushes to the OS buffer on each
            // commit; we ask for the durability we want explicitly on every batch.
            let db = Database::builder(dir).manual_journal_persist(true).open()?;
            let mut ks = Vec::new();
            for name in TABLES {
                ks.push(db.keyspace(name, KeyspaceCreateOptions::default)?);
            }
            let mode = if sync_data { PersistMode::SyncData } else { PersistMode::SyncAll };
            Ok(FjallEngine { db, ks, mode })
        }
    }

    impl Engine for FjallEngine {
        fn commit(&mut self, b: &Batch, durable: bool) -> Res<usize> {
            let mut found = 0;
            for k in &b.checks {
                if self.ks[T_DEDUP].get(k)?.is_some() {
                    found += 1;
                }
            }
            // One journal entry for all keyspaces: atomic; persisted (fsync) before commit returns.
            let mut wb = self
                .db
                .batch()
                .durability(if durable { Some(self.mode) } else { None });
            for (t, k, v) in &b.puts {
                wb.insert(&self.ks[*t], k.as_slice(), v.as_slice());
            }
            wb.commit()?;
            Ok(found)
        }

        fn last_seq(&self, user: u64) -> Res<Option<u64>> {
            let (lo, hi) = inbox_range(user);
            match self.ks[T_INBOX].range(lo..=hi).next_back() {
                Some(g) => Ok(Some(seq_of_inbox_key(&g.key()?))),
                None => Ok(None),
            }
        }

        fn scan_inbox(&self, user: u64, n: usize) -> Res<usize> {
            let (lo, hi) = inbox_range(user);
            let mut c = 0;
            for g in self.ks[T_INBOX].range(lo..=hi).rev().take(n) {
                let (k, v) = g.into_inner()?;
                std::hint::black_box((k.len(), v.len()));
                c += 1;
            }
            Ok(c)
        }

        fn sync(&mut self) -> Res<()> {
            self.db.persist(PersistMode::SyncAll)?;
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- rocksdb
#[cfg(feature = "rocksdb")]
mod rocks_engine {
    use super::*;
    use rocksdb::{
        ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options, WriteBatch,
        WriteOptions, DB,
    };

    pub struct RocksEngine {
        db: DB,
    }

    impl RocksEngine {
        pub fn open(dir: &Path) -> Res<Self> {
            std::fs::create_dir_all(dir)?;
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let cfs = TABLES.iter().map(|n| {
                let mut o = Options::default();
                o.set_compression_type(DBCompressionType::Lz4);
                ColumnFamilyDescriptor::new(*n, o)
            });
            let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
            Ok(RocksEngine { db })
        }
        fn cf(&self, t: usize) -> &rocksdb::ColumnFamily {
            self.db.cf_handle(TABLES[t]).expect("column family")
        }
    }

    impl Engine for RocksEngine {
        fn commit(&mut self, b: &Batch, durable: bool) -> Res<usize> {
            let mut found = 0;
            let dedup = self.cf(T_DEDUP);
            for k in &b.checks {
                if self.db.get_pinned_cf(dedup, k)?.is_some() {
                    found += 1;
                }
            }
            let mut wb = WriteBatch::default();
            for (t, k, v) in &b.puts {
                wb.put_cf(self.cf(*t), k, v);
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(durable);
            self.db.write_opt(wb, &wo)?;
            Ok(found)
        }

        fn last_seq(&self, user: u64) -> Res<Option<u64>> {
            let (_, hi) = inbox_range(user);
            let mut it = self
                .db
                .iterator_cf(self.cf(T_INBOX), IteratorMode::From(&hi, Direction::Reverse));
            match it.next() {
                Some(kv) => {
                    let (k, _) = kv?;
                    if k.len() >= 16 && k[..8] == user_key(user) {
                        Ok(Some(seq_of_inbox_key(&k)))
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            }
        }

        fn scan_inbox(&self, user: u64, n: usize) -> Res<usize> {
            let (_, hi) = inbox_range(user);
            let uk = user_key(user);
            let it = self
                .db
                .iterator_cf(self.cf(T_INBOX), IteratorMode::From(&hi, Direction::Reverse));
            let mut c = 0;
            for kv in it {
                let (k, v) = kv?;
                if k[..8] != uk {
                    break;
                }
                std::hint::black_box((k.len(), v.len()));
                c += 1;
                if c == n {
                    break;
                }
            }
            Ok(c)
        }

        fn sync(&mut self) -> Res<()> {
            self.db.flush_wal(true)?;
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- workload

struct Workload {
    rng: SmallRng,
    users: u64,
    seq: Vec<u64>,
    counter: u64,
    group_members: Vec<u64>,
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz      etaoinshr.,";

impl Workload {
    fn new(users: u64, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut group_members = rand::seq::index::sample(&mut rng, users as usize, 1000.min(users as usize))
            .into_iter()
            .map(|i| i as u64)
            .collect::<Vec<_>>();
        group_members.sort_unstable();
        Workload { rng, users, seq: vec![0; users as usize], counter: 0, group_members }
    }

    /// 128-bit time-ordered id: microseconds since the epoch, then a counter.
    fn next_id(&mut self) -> [u8; 16] {
        let us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        self.counter += 1;
        (((us as u128) << 64) | self.counter as u128).to_be_bytes()
    }

    fn text(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| TEXT[self.rng.gen_range(0..TEXT.len())]).collect()
    }

    /// Adds the dedup check and the rows of one message from `sender` to `readers` in `chat`.
    fn message(&mut self, b: &mut Batch, chat: [u8; 16], sender: u64, readers: &[u64]) {
        let id = self.next_id();
        // dedup: (sender, client id) -> (chat, id, timestamp, filler) 60 B; read before the write
        let mut dk = user_key(sender).to_vec();
        dk.extend((0..12).map(|_| ALNUM[self.rng.gen_range(0..ALNUM.len())]));
        let mut dv = Vec::with_capacity(60);
        dv.extend_from_slice(&chat);
        dv.extend_from_slice(&id);
        dv.extend_from_slice(&self.counter.to_be_bytes());
        dv.resize(60, 0);
        b.checks.push(dk.clone());
        b.puts.push((T_DEDUP, dk, dv));
        // message: (chat, id) -> header 24 B + text = 250 B
        let mut mk = chat.to_vec();
        mk.extend_from_slice(&id);
        let mut mv = Vec::with_capacity(250);
        mv.extend_from_slice(&user_key(sender));
        mv.extend_from_slice(&self.counter.to_be_bytes());
        mv.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let t = self.text(250 - mv.len());
        mv.extend_from_slice(&t);
        b.puts.push((T_MSG, mk, mv));
        for &r in readers {
            self.seq[r as usize] += 1;
            let s = self.seq[r as usize].to_be_bytes();
            let mut ik = user_key(r).to_vec();
            ik.extend_from_slice(&s);
            let mut iv = chat.to_vec();
            iv.extend_from_slice(&id);
            b.puts.push((T_INBOX, ik, iv));
            let mut ck = user_key(r).to_vec();
            ck.extend_from_slice(&chat);
            ck.extend_from_slice(&s);
            let mut cv = id.to_vec();
            cv.extend_from_slice(&user_key(sender));
            cv.resize(40, 0);
            b.puts.push((T_CHAT_IDX, ck, cv));
        }
    }

    fn direct(&mut self, b: &mut Batch) {
        let a = self.rng.gen_range(0..self.users);
        let mut c = self.rng.gen_range(0..self.users - 1);
        if c >= a {
            c += 1;
        }
        let mut chat = [0u8; 16];
        chat[..8].copy_from_slice(&a.min(c).to_be_bytes());
        chat[8..].copy_from_slice(&a.max(c).to_be_bytes());
        self.message(b, chat, a, &[a, c]);
    }

    fn group(&mut self, b: &mut Batch) {
        let members = std::mem::take(&mut self.group_members);
        let sender = members[self.rng.gen_range(0..members.len())];
        let mut chat = [0xffu8; 16];
        chat[8..].copy_from_slice(&7u64.to_be_bytes());
        self.message(b, chat, sender, &members);
        self.group_members = members;
    }
}

fn rss_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let f = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (f("VmRSS:"), f("VmHWM:"))
}

fn du_bytes(p: &Path) -> u64 {
    // Allocated bytes (what `du` counts), files and subdirectories.
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    total += du_bytes(&e.path());
                } else {
                    total += m.blocks() * 512;
                }
            }
        }
    }
    total
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Durable commits of `batch` messages (or one group message when `group`) for `secs`.
fn run_writes(e: &mut dyn Engine, w: &mut Workload, batch: usize, group: bool, secs: f64, label: &str) -> Res<()> {
    let mut b = Batch::default();
    let mut lat = Vec::new();
    let mut msgs = 0u64;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        b.clear();
        if group {
            w.group(&mut b);
        } else {
            for _ in 0..batch {
                w.direct(&mut b);
            }
        }
        let c0 = Instant::now();
        e.commit(&b, true)?;
        lat.push(c0.elapsed());
        msgs += if group { 1 } else { batch as u64 };
    }
    let el = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let commits = lat.len();
    println!(
        "RESULT {label} batch={} msgs_per_s={:.0} commits_per_s={:.1} commit_ms_p50={:.2} commit_ms_p99={:.2} commits={commits} secs={el:.2}",
        if group { "group1000".to_string() } else { batch.to_string() },
        msgs as f64 / el,
        commits as f64 / el,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
    );
    Ok(())
}

fn open_engine(name: &str, dir: &Path, sync_data: bool) -> Res<Box<dyn Engine>> {
    let _ = sync_data;
    match name {
        #[cfg(feature = "redb")]
        "redb" => Ok(Box::new(redb_engine::RedbEngine::open(dir)?)),
        #[cfg(feature = "fjall")]
        "fjall" => Ok(Box::new(fjall_engine::FjallEngine::open(dir, sync_data)?)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(Box::new(rocks_engine::RocksEngine::open(dir)?)),
        other => Err(format!("engine {other} not built in (features redb, fjall, rocksdb)").into()),
    }
}

fn main() -> Res<()> {
    let start = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: natter-engine-eval <redb|fjall|rocksdb> <empty|preload|full|open> <data dir> [--secs S] [--messages N] [--users N] [--sync all|data]");
        std::process::exit(2);
    }
    let (engine, mode, dir) = (args[1].as_str(), args[2].as_str(), PathBuf::from(&args[3]));
    let mut secs = 5.0;
    let mut messages = 1_000_000u64;
    let mut users = 10_000u64;
    let mut sync_data = false;
    let mut i = 4;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--secs" => secs = args[i + 1].parse()?,
            "--messages" => messages = args[i + 1].parse()?,
            "--users" => users = args[i + 1].parse()?,
            "--sync" => sync_data = args[i + 1] == "data",
            o => return Err(format!("unknown option {o}").into()),
        }
        i += 2;
    }
    let tag = if engine == "fjall" && sync_data { "fjall(SyncData)".to_string() } else { engine.to_string() };

    match mode {
        // Each run on its own fresh data dir.
        "empty" => {
            for (batch, group) in [(1, false), (10, false), (100, false), (1, true)] {
                let d = dir.join(if group { "group".to_string() } else { format!("b{batch}") });
                let _ = std::fs::remove_dir_all(&d);
                let mut e = open_engine(engine, &d, sync_data)?;
                let mut w = Workload::new(users, 1);
                run_writes(e.as_mut(), &mut w, batch, group, secs, &format!("{tag} empty"))?;
                drop(e);
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        "preload" => {
            let _ = std::fs::remove_dir_all(&dir);
            let mut e = open_engine(engine, &dir, sync_data)?;
            let mut w = Workload::new(users, 2);
            let mut b = Batch::default();
            let t0 = Instant::now();
            let mut done = 0;
            while done < messages {
                b.clear();
                let n = 10_000.min(messages - done);
                for _ in 0..n {
                    w.direct(&mut b);
                }
                // redb: a Durability::None commit cannot reuse the pages freed before it (they are
                // freed only by a later durable commit), so a 1M preload without sync grows the
                // file to ~16 GB; one fsync per 10k messages costs nothing here. fjall, rocksdb: no sync.
                e.commit(&b, engine == "redb")?;
                done += n;
            }
            e.sync()?;
            let load = t0.elapsed().as_secs_f64();
            let (rss, hwm) = rss_kib();
            let tc = Instant::now();
            drop(e);
            let close = tc.elapsed().as_secs_f64();
            let bytes = du_bytes(&dir);
            println!(
                "RESULT {tag} preload messages={messages} load_s={load:.1} load_msgs_per_s={:.0} rss_after_preload_mib={:.0} peak_rss_mib={:.0} close_s={close:.2} disk_bytes={bytes} bytes_per_msg={:.0}",
                messages as f64 / load,
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0,
                bytes as f64 / messages as f64
            );
        }
        // Open only: time to the first answered read, then exit (run under /usr/bin/time too).
        "open" => {
            let e = open_engine(engine, &dir, sync_data)?;
            let n = e.scan_inbox(1, 50)?;
            let t = start.elapsed().as_secs_f64() * 1e3;
            let (rss, _) = rss_kib();
            println!("RESULT {tag} open ms_to_first_read={t:.1} rss_after_open_mib={:.0} ({n} rows read)", rss as f64 / 1024.0);
        }
        "full" => {
            let mut e = open_engine(engine, &dir, sync_data)?;
            let open_ms = start.elapsed().as_secs_f64() * 1e3;
            // Per-user seq recovery: one reverse seek per user (the writer keeps seqs in memory).
            let mut w = Workload::new(users, 3);
            let t = Instant::now();
            for u in 0..users {
                w.seq[u as usize] = e.last_seq(u)?.unwrap_or(0);
            }
            let seq_ms = t.elapsed().as_secs_f64() * 1e3;
            // Read check: last 50 inbox entries of a random user.
            let mut rng = SmallRng::seed_from_u64(4);
            let mut lat = Vec::new();
            let mut rows = 0;
            for _ in 0..5000 {
                let u = rng.gen_range(0..users);
                let t = Instant::now();
                rows += e.scan_inbox(u, 50)?;
                lat.push(t.elapsed());
            }
            lat.sort_unstable();
            let (rss, _) = rss_kib();
            println!(
                "RESULT {tag} full open_ms={open_ms:.1} seq_recovery_ms={seq_ms:.1} scan50_us_median={:.1} scan50_us_p99={:.1} avg_rows={:.1} rss_after_open_and_reads_mib={:.0}",
                pct(&lat, 0.5) * 1e3,
                pct(&lat, 0.99) * 1e3,
                rows as f64 / 5000.0,
                rss as f64 / 1024.0
            );
            for batch in [1, 10, 100] {
                run_writes(e.as_mut(), &mut w, batch, false, secs, &format!("{tag} 1M"))?;
            }
            run_writes(e.as_mut(), &mut w, 1, true, secs, &format!("{tag} 1M"))?;
        }
        o => return Err(format!("unknown mode {o}").into()),
    }
    Ok(())
}
