//! The tamper-evident audit log: append-only JSON lines in `state_dir`, each holding the SHA-256
//! of the previous record, so an edit, deletion, reorder or truncation is detectable
//! (`ddtwatch audit verify`).
//!
//! Record: `{"seq":n,"ts":"RFC 3339","kind":"...","data":{...},"prev":"<hex>","hash":"<hex>"}` with
//! `hash = SHA-256(prev ‖ "\n" ‖ {"seq","ts","kind","data"} as compact JSON)`. The first record of a
//! log has `prev` = 64 zeros. A side file `<log>.head` holds the last seq and hash (written on
//! every append) so cutting records off the end is detected too. Rotation renames the log to
//! `<log>.<first seq>` and the chain continues into the new file.
//!
//! **Keyed chain** (`audit.key` in the config): `hash = HMAC-SHA-256(key, same message)` instead,
//! and every record says `"mac":"hmac-sha256"`. Without the key nobody can recompute a keyed
//! chain, so rewriting the whole log (and its head) is detected too; `audit verify --key-file`
//! checks it. A chain is keyed from its first record or not at all: `run` refuses to continue an
//! unkeyed chain with a key (or a keyed one without), and a verifier given the key refuses any
//! unkeyed record (a rewrite that dropped the MACs).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod topic;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub ts: String,
    pub kind: String,
    pub data: Value,
    pub prev: String,
    pub hash: String,
    /// `hmac-sha256` in a keyed chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The `mac` of a keyed chain's records.
pub const MAC: &str = "hmac-sha256";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash a record must carry.
pub fn record_hash(prev: &str, seq: u64, ts: &str, kind: &str, data: &Value) -> String {
    keyed_hash(None, prev, seq, ts, kind, data)
}

/// [`record_hash`], or with a key its HMAC-SHA-256 over the same message.
pub fn keyed_hash(key: Option<&[u8]>, prev: &str, seq: u64, ts: &str, kind: &str, data: &Value) -> String {
    let body = serde_json::to_vec(&json!({"seq": seq, "ts": ts, "kind": kind, "data": data})).expect("json");
    match key {
        None => {
            let mut h = Sha256::new();
            h.update(prev.as_bytes());
            h.update(b"\n");
            h.update(&body);
            hex(&h.finalize())
        }
        Some(k) => {
            let mut m = <Hmac<Sha256>>::new_from_slice(k).expect("HMAC takes any key length");
            m.update(prev.as_bytes());
            m.update(b"\n");
            m.update(&body);
            hex(&m.finalize().into_bytes())
        }
    }
}

/// The hash `r` must carry, given the key (None for an unkeyed record).
fn expected_hash(r: &Record, key: Option<&[u8]>) -> String {
    keyed_hash(key, &r.prev, r.seq, &r.ts, &r.kind, &r.data)
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    keyed: bool,
    /// The chain's id: names this chain's records on the audit topic, where several instances'
    /// chains meet (absent in a head written before the topic existed; one is made on open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain: Option<String>,
    /// The last seq the audit topic has acknowledged together with every record before it:
    /// records after it are produced again when the log is opened (a restart before the topic
    /// took them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic_seq: Option<u64>,
}

/// Appends records; every append is fsync'd before it returns. (Its `Debug` never shows the key.)
pub struct AuditLog {
    path: PathBuf,
    file: File,
    seq: u64,
    last: String,
    bytes: u64,
    max_bytes: u64,
    key: Option<Vec<u8>>,
    pub written: u64,
    /// Appends that failed (`ddtwatch_audit_write_errors_total`): the record is not in the trail.
    pub write_errors: u64,
    /// This chain's id (see `Head::chain`).
    chain: String,
    /// Where every record is also produced (`audit.topic`), so the trail outlives the pod.
    topic: Option<std::sync::Arc<topic::AuditTopic>>,
    /// See `Head::topic_seq`.
    topic_seq: Option<u64>,
    /// Stamps [`record`]'s records ([`crate::time::wall_clock_ms`] unless [`AuditLog::with_clock`]).
    clock: crate::time::Clock,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("seq", &self.seq)
            .field("keyed", &self.key.is_some())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) the log, continuing the chain from its last record.
    /// Refuses (`InvalidData`, naming the problem) a log that does not match its head: records
    /// cut off the end, a head deleted or garbled while records exist, a log deleted while its
    /// head remains. Rewriting the head over such a log would hide the tampering.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        Self::open_keyed(path, max_bytes, None)
    }

    /// [`AuditLog::open`] for a keyed chain (`key`) or an unkeyed one (None). Also refuses a chain
    /// keyed the other way, and (keyed) a last record whose MAC the key does not give: a wrong
    /// key, or an edit.
    pub fn open_keyed(path: &Path, max_bytes: u64, key: Option<Vec<u8>>) -> io::Result<Self> {
        let (mut seq, mut last) = (0u64, GENESIS.to_string());
        // Whether the existing chain is keyed: from its records, else its head.
        let mut chain_keyed: Option<bool> = None;
        let mut last_record: Option<Record> = None;
        let refuse = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "audit log {}: {what}; refusing to continue the chain (check it with `ddtwatch audit verify`, \
                     then move the log and its .head aside to start a new one)",
                    path.display()
                ),
            )
        };
        let head = match std::fs::read(head_path(path)) {
            Ok(h) => Some(serde_json::from_slice::<Head>(&h).map_err(|_| refuse("its head file is garbled".into()))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut records = 0u64;
        let had_head = head.is_some();
        // The hash of the record the head names, met while scanning.
        let mut head_record: Option<String> = None;
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let r: Record = serde_json::from_str(&line).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("audit log {}: {e}", path.display()))
                })?;
                if head.as_ref().is_some_and(|h| h.seq == r.seq) {
                    head_record = Some(r.hash.clone());
                }
                seq = r.seq;
                last = r.hash.clone();
                chain_keyed = Some(r.mac.is_some());
                last_record = Some(r);
                records += 1;
            }
            // The head is written after each record is made durable, so it may lag the log by the
            // records of a crash (or a full disk) in between: a log that runs past its head is
            // fine as long as the head's record is in it, unchanged.
            let head_record_ok = match &head {
                Some(h) if records > 0 && h.seq > 0 && h.seq <= seq => head_record.as_ref() == Some(&h.hash),
                _ => true,
            };
            match &head {
                Some(h) if records > 0 && h.seq <= seq && !head_record_ok => {
                    return Err(refuse(format!("its record {} differs from what the head says (edited)", h.seq)));
                }
                Some(h) if records > 0 && h.seq <= seq => {}
                Some(h) if records == 0 && h.seq > 0 && rotated_path(path, h.seq).exists() => {
                    // Rotated: the new file is empty and the chain continues from the head.
                    seq = h.seq;
                    last = h.hash.clone();
                }
                Some(h) if h.seq > seq => {
                    return Err(refuse(format!(
                        "it ends at seq {seq} but its head says {} (records cut off the end)",
                        h.seq
                    )));
                }
                None if records > 0 => return Err(refuse("it has records but its head file is missing".into())),
                _ => {}
            }
        } else if let Some(h) = &head {
            // Rotated away and not re-created (a crash between rename and create): the rotated
            // file must be there; otherwise the log itself was deleted.
            if !rotated_path(path, h.seq).exists() {
                return Err(refuse(format!("the log is missing but its head says seq {}", h.seq)));
            }
            seq = h.seq;
            last = h.hash.clone();
        }
        let chain_keyed = chain_keyed.or(head.as_ref().filter(|h| h.seq > 0 || h.keyed).map(|h| h.keyed));
        match (chain_keyed, &key) {
            (Some(false), Some(_)) => {
                return Err(refuse(
                    "its chain is unkeyed but audit.key is set (a chain is keyed from its first record: keep this \
                     log for `audit verify` and move it aside to start a keyed one)"
                        .into(),
                ));
            }
            (Some(true), None) => {
                return Err(refuse("its chain is keyed (HMAC) but no audit.key is set".into()));
            }
            _ => {}
        }
        if let (Some(k), Some(r)) = (&key, &last_record)
            && expected_hash(r, Some(k)) != r.hash
        {
            return Err(refuse(format!(
                "record {} does not carry the MAC this audit.key gives (a wrong key, or an edit)",
                r.seq
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let fresh = seq == 0 && !had_head;
        let chain = head.as_ref().and_then(|h| h.chain.clone()).unwrap_or_else(|| new_chain_id(path, &last));
        let topic_seq = head.as_ref().and_then(|h| h.topic_seq);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if fresh {
            // A new chain gets its head before its first record, so a log with records and no
            // head can only be one whose head was deleted.
            write_head(
                path,
                &Head {
                    seq: 0,
                    hash: GENESIS.to_string(),
                    keyed: key.is_some(),
                    chain: Some(chain.clone()),
                    topic_seq: None,
                },
            )?;
        }
        let bytes = file.metadata()?.len();
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            seq,
            last,
            bytes,
            max_bytes,
            key,
            written: 0,
            write_errors: 0,
            chain,
            topic: None,
            topic_seq,
            clock: crate::time::wall_clock_ms,
        })
    }

    /// Stamps records appended through [`record`] with `clock` (tests drive it).
    pub fn with_clock(mut self, clock: crate::time::Clock) -> Self {
        self.clock = clock;
        self
    }

    fn write_head(&self) -> io::Result<()> {
        write_head(
            &self.path,
            &Head {
                seq: self.seq,
                hash: self.last.clone(),
                keyed: self.key.is_some(),
                chain: Some(self.chain.clone()),
                topic_seq: self.topic_seq,
            },
        )
    }

    /// The last seq appended (0: none).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Records that the audit topic has acknowledged every record up to `seq` (kept in the
    /// head, so a restart re-sends only what comes after).
    pub fn mark_on_topic(&mut self, seq: u64) -> io::Result<()> {
        if self.topic_seq.is_some_and(|t| t >= seq) {
            return Ok(());
        }
        self.topic_seq = Some(seq);
        self.write_head()
    }

    /// Also produces every record from now on to `topic` (`audit.topic`), after the records of
    /// the live file the topic has not acknowledged (all of them when no acknowledgement was
    /// ever recorded: a log that existed before the topic, or one whose pod died first).
    /// Returns how many were produced again.
    pub fn with_topic(mut self, topic: std::sync::Arc<topic::AuditTopic>) -> io::Result<(Self, u64)> {
        let after = self.topic_seq.unwrap_or(0);
        let mut resent = 0;
        if self.seq > after {
            let f = File::open(&self.path)?;
            let mut first = None;
            for line in BufReader::new(f).lines() {
                let Ok(r) = serde_json::from_str::<Record>(&line?) else { continue };
                first.get_or_insert(r.seq);
                if r.seq > after {
                    topic.send(&self.chain, &r);
                    resent += 1;
                }
            }
            if first.is_some_and(|f| f > after + 1) {
                tracing::warn!(
                    from = after + 1,
                    to = first.unwrap_or(0) - 1,
                    "audit records in rotated files are not on the audit topic; verify them from the files"
                );
            }
        }
        self.topic = Some(topic);
        Ok((self, resent))
    }

    /// The audit topic, if records go to one.
    pub fn topic(&self) -> Option<&std::sync::Arc<topic::AuditTopic>> {
        self.topic.as_ref()
    }

    /// This chain's id.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Appends one record (kind: breach, notification, config, lifecycle, …).
    pub fn append(&mut self, kind: &str, data: Value, ts: i64) -> io::Result<Record> {
        if self.max_bytes > 0 && self.bytes >= self.max_bytes {
            self.rotate()?;
        }
        let seq = self.seq + 1;
        let ts = crate::event::format_ts(ts);
        let hash = keyed_hash(self.key.as_deref(), &self.last, seq, &ts, kind, &data);
        let mac = self.key.as_ref().map(|_| MAC.to_string());
        let r = Record { seq, ts, kind: kind.to_string(), data, prev: self.last.clone(), hash: hash.clone(), mac };
        let mut line = serde_json::to_vec(&r).expect("json");
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.bytes += line.len() as u64;
        self.seq = seq;
        self.last = hash.clone();
        self.written += 1;
        // The record is in the chain now: it goes to the topic even if the head cannot be written.
        if let Some(t) = &self.topic {
            t.send(&self.chain, &r);
        }
        self.write_head()?;
        Ok(r)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let rotated = rotated_path(&self.path, self.seq);
        std::fs::rename(&self.path, &rotated)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.bytes = 0;
        Ok(())
    }
}

/// A new chain id: 32 hex digits from the wall time (entropy only, not a timestamp: read here
/// directly), the process, the path, the chain's last hash
/// and 128 bits from the standard library's per-process random hash keys (two replicas that
/// start in the same millisecond, both PID 1 with the same path, still differ).
fn new_chain_id(path: &Path, last: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.finish()
    };
    let mut h = Sha256::new();
    h.update(format!(
        "{}:{}:{}:{last}:{:016x}{:016x}",
        crate::time::wall_clock_ms(),
        std::process::id(),
        path.display(),
        random(1),
        random(2)
    ));
    hex(&h.finalize())[..32].to_string()
}

/// Where rotation moves a log whose last record is `last_seq`.
fn rotated_path(path: &Path, last_seq: u64) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{last_seq}"));
    PathBuf::from(p)
}

fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn write_head(path: &Path, head: &Head) -> io::Result<()> {
    let tmp = {
        let mut p = head_path(path).into_os_string();
        p.push(".tmp");
        PathBuf::from(p)
    };
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(head).expect("json"))?;
        f.sync_data()?;
    }
    std::fs::rename(tmp, head_path(path))
}

/// Shared handle used by the service.
pub type SharedAudit = std::sync::Arc<std::sync::Mutex<AuditLog>>;

/// Appends a record at the log's clock's time; a failure is logged and counted
/// (`ddtwatch_audit_write_errors_total`, alert `DdtwatchAuditWriteFailing`) and the service keeps
/// running: monitoring goes on while the disk is fixed.
pub fn record(log: &SharedAudit, kind: &str, data: Value) {
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    let now = (l.clock)();
    if let Err(e) = l.append(kind, data, now) {
        l.write_errors += 1;
        tracing::error!(error = %e, kind, "audit log append failed");
    }
}

/// The records of one audit-log file as JSON values (for reports); unparsable lines (a torn
/// last line) are skipped — `audit verify` is the integrity check.
pub fn read_records(path: &Path) -> io::Result<Vec<Value>> {
    let f = File::open(path)?;
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        if let Ok(v) = serde_json::from_str::<Value>(&line?) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The final `notification` records (delivered or failed, not retries) of one deployment,
/// read line by line: only matching lines are parsed and kept, and a line is held to at most
/// 1 MiB, so memory follows the deployment's notifications, not the log's size.
pub fn read_notifications(path: &Path, deployment: &str) -> io::Result<Vec<Value>> {
    let mut input = BufReader::with_capacity(1 << 16, File::open(path)?);
    let needle = format!("\"key\":\"ddtwatch/{deployment}/");
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if crate::ingest::replay::read_line_bounded(&mut input, &mut buf, 1 << 20)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        if !line.contains("\"kind\":\"notification\"") || !line.contains(&needle) {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["data"]["result"] != "retry"
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// What `audit verify` found.
#[derive(Debug, PartialEq)]
pub enum Verification {
    Ok {
        records: u64,
        first_seq: u64,
        last_seq: u64,
    },
    /// The first record (1-based line in the concatenated input, file) that breaks the chain.
    Broken {
        file: PathBuf,
        line: usize,
        seq: Option<u64>,
        problem: String,
    },
}

/// What `audit verify` insists on beyond the links between records.
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// Accept a chain that starts after seq 1 (a tail whose older files are archived elsewhere);
    /// its first `prev` is then taken as given.
    pub partial: bool,
    /// Do not require the `.head` file beside the last file (an archive without one).
    pub no_head: bool,
    /// The key of a keyed chain: every record must then carry its HMAC (an unkeyed record is a
    /// rewrite). Without it, a keyed record is reported as unverifiable.
    pub key: Option<Vec<u8>>,
}

impl std::fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("partial", &self.partial)
            .field("no_head", &self.no_head)
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

/// The checks every record of a chain must pass, in chain order (files, or a topic dump sorted
/// by seq).
pub(crate) struct ChainCheck {
    prev: Option<String>,
    expect_seq: Option<u64>,
    partial: bool,
    key: Option<Vec<u8>>,
}

impl ChainCheck {
    pub(crate) fn new(opts: &VerifyOptions) -> Self {
        ChainCheck { prev: None, expect_seq: None, partial: opts.partial, key: opts.key.clone() }
    }

    /// Checks the next record; Err names its seq and the problem.
    pub(crate) fn next(&mut self, r: &Record) -> Result<(), (Option<u64>, String)> {
        if let Some(p) = &self.prev
            && &r.prev != p
        {
            return Err((
                Some(r.seq),
                "prev does not match the previous record's hash (a record before it was deleted, reordered or edited)"
                    .into(),
            ));
        }
        if self.prev.is_none() && r.seq == 1 && r.prev != GENESIS {
            return Err((Some(r.seq), "first record does not start the chain".into()));
        }
        if self.prev.is_none() && r.seq != 1 && !self.partial {
            return Err((
                Some(r.seq),
                format!(
                    "the chain starts at seq {} instead of 1 (records deleted from the start, or the older \
                     rotated files not given first; --partial checks a tail)",
                    r.seq
                ),
            ));
        }
        if let Some(s) = self.expect_seq
            && r.seq != s
        {
            return Err((Some(r.seq), format!("seq {} where {s} was expected (deleted or reordered)", r.seq)));
        }
        match (&r.mac, self.key.as_deref()) {
            (Some(m), _) if m != MAC => {
                return Err((Some(r.seq), format!("unknown mac {m:?} (this version knows {MAC})")));
            }
            (Some(_), None) => {
                return Err((
                    Some(r.seq),
                    "the record is keyed (hmac-sha256): give the chain's key with --key-file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    Some(r.seq),
                    "the record is not keyed, but this chain's key was given (its MAC was dropped: rewritten)".into(),
                ));
            }
            _ => {}
        }
        if expected_hash(r, r.mac.as_ref().and(self.key.as_deref())) != r.hash {
            let what = if self.key.is_some() {
                "MAC does not match the record's content (edited, or the wrong key)"
            } else {
                "hash does not match the record's content (edited)"
            };
            return Err((Some(r.seq), what.into()));
        }
        self.prev = Some(r.hash.clone());
        self.expect_seq = Some(r.seq + 1);
        Ok(())
    }
}

/// [`verify_with`] with both ends anchored: the chain starts at seq 1 with the genesis hash,
/// and ends where the head file beside the last file says.
pub fn verify(files: &[PathBuf]) -> io::Result<Verification> {
    verify_with(files, VerifyOptions::default())
}

/// Verifies files in chain order (rotated ones first, the live log last).
pub fn verify_with(files: &[PathBuf], opts: VerifyOptions) -> io::Result<Verification> {
    let mut check = ChainCheck::new(&opts);
    let (mut records, mut first_seq, mut last_seq) = (0u64, None, 0u64);
    // Hashes by seq of the last file's records (the head names one of them).
    let mut head_hashes: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    for file in files {
        let f = File::open(file)?;
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line?;
            let broken = |seq, problem: String| Verification::Broken { file: file.clone(), line: i + 1, seq, problem };
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => return Ok(broken(None, format!("not a record ({e}); truncated or edited"))),
            };
            if let Err((seq, problem)) = check.next(&r) {
                return Ok(broken(seq, problem));
            }
            first_seq.get_or_insert(r.seq);
            last_seq = r.seq;
            if files.last() == Some(file) {
                head_hashes.insert(r.seq, r.hash.clone());
            }
            records += 1;
        }
    }
    if let Some(last_file) = files.last() {
        let broken = |problem: String| Verification::Broken {
            file: last_file.clone(),
            line: 0,
            seq: Some(last_seq + 1),
            problem,
        };
        let head_file = head_path(last_file);
        match std::fs::read(&head_file) {
            Ok(h) => match serde_json::from_slice::<Head>(&h) {
                Ok(head) if head.seq > last_seq => {
                    return Ok(broken(format!(
                        "the log ends at seq {last_seq} but its head says {} (records cut off the end)",
                        head.seq
                    )));
                }
                // The head may lag the log by the records of a crash between record and head;
                // the record it names must be there, unchanged.
                Ok(head) if head.seq > 0 && head_hashes.get(&head.seq) != Some(&head.hash) => {
                    return Ok(broken(format!("record {} differs from what the head says (edited)", head.seq)));
                }
                Ok(_) => {}
                Err(_) => return Ok(broken(format!("the head file {} is garbled", head_file.display()))),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound && !opts.no_head => {
                return Ok(broken(format!(
                    "no head file {} (deleted? --no-head checks an archive without one)",
                    head_file.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Verification::Ok { records, first_seq: first_seq.unwrap_or(0), last_seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records are stamped by the log's clock, not the system's.
    #[test]
    fn records_carry_the_clock_passed_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let fixed = || 1_700_000_000_123;
        let log: SharedAudit =
            std::sync::Arc::new(std::sync::Mutex::new(AuditLog::open(&path, 0).unwrap().with_clock(fixed)));
        record(&log, "config", json!({"event": "loaded"}));
        let records = read_records(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["ts"], crate::time::format_ts(1_700_000_000_123));
        assert!(matches!(verify(&[path]).unwrap(), Verification::Ok { records: 1, .. }), "a stamped chain verifies");
    }

    /// A failed append (here: the head cannot be replaced) is counted, not silent.
    #[test]
    fn a_failed_append_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log: SharedAudit = std::sync::Arc::new(std::sync::Mutex::new(AuditLog::open(&path, 0).unwrap()));
        record(&log, "config", json!({"event": "loaded"}));
        let counts = |l: &SharedAudit| {
            let l = l.lock().unwrap();
            (l.written, l.write_errors)
        };
        assert_eq!(counts(&log), (1, 0));
        // A non-empty directory where the head goes: the rename over it fails, even for root.
        std::fs::remove_file(head_path(&path)).unwrap();
        std::fs::create_dir_all(head_path(&path).join("x")).unwrap();
        record(&log, "breach", json!({"i": 1}));
        assert_eq!(counts(&log), (2, 1), "the record is in the log; its head could not be written");
    }

    fn log_with(n: u64, dir: &Path) -> PathBuf {
        let path = dir.join("audit.log");
        let mut log = AuditLog::open(&path, 0).unwrap();
        for i in 0..n {
            log.append("breach", json!({"deployment": "d", "condition": "c", "i": i}), 1_777_107_600_000 + i as i64)
                .unwrap();
        }
        path
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(String::from).collect()
    }

    fn write(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    fn broken_seq(v: Verification) -> Option<u64> {
        match v {
            Verification::Broken { seq, .. } => seq,
            Verification::Ok { .. } => panic!("tampering not detected"),
        }
    }

    #[test]
    fn intact_log_verifies_and_reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_with(5, dir.path());
        let mut log = AuditLog::open(&path, 0).unwrap();
        log.append("config", json!({"hash": "x"}), 0).unwrap();
        assert_eq!(verify(&[path]).unwrap(), Verification::Ok { records: 6, first_seq: 1, last_seq: 6 });
    }

    #[test]
    fn edit_delete_swap_and_truncate_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_with(6, dir.path());
        let orig = lines(&path);

        let mut edited = orig.clone();
        edited[2] = edited[2].replace("\"i\":2", "\"i\":9");
        write(&path, &edited);
        assert_eq!(broken_seq(verify(std::slice::from_ref(&path)).unwrap()), Some(3));

        let mut deleted = orig.clone();
        deleted.remove(3);
        write(&path, &deleted);
        assert_eq!(broken_seq(verify(std::slice::from_ref(&path)).unwrap()), Some(5));

        let mut swapped = orig.clone();
        swapped.swap(1, 2);
        write(&path, &swapped);
        assert_eq!(broken_seq(verify(std::slice::from_ref(&path)).unwrap()), Some(3));

        // Whole records cut off the end: the head file says more were written.
        write(&path, &orig[..4]);
        assert_eq!(broken_seq(verify(std::slice::from_ref(&path)).unwrap()), Some(5));

        // A torn last line.
        let mut torn = orig.clone();
        torn[5].truncate(20);
        write(&path, &torn);
        assert!(matches!(verify(std::slice::from_ref(&path)).unwrap(), Verification::Broken { line: 6, .. }));

        write(&path, &orig);
        assert!(matches!(verify(&[path]).unwrap(), Verification::Ok { records: 6, .. }));
    }

    #[test]
    fn both_ends_are_anchored() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_with(20, dir.path());
        let orig = lines(&path);
        let head = std::fs::read(head_path(&path)).unwrap();
        let check = |p: &Path| verify(&[p.to_path_buf()]).unwrap();

        // First line deleted; first 10 deleted.
        write(&path, &orig[1..]);
        assert_eq!(broken_seq(check(&path)), Some(2));
        write(&path, &orig[10..]);
        assert_eq!(broken_seq(check(&path)), Some(11));
        // A tail is accepted only when asked for (and still checked against its head).
        let partial = VerifyOptions { partial: true, ..Default::default() };
        assert!(matches!(
            verify_with(std::slice::from_ref(&path), partial).unwrap(),
            Verification::Ok { first_seq: 11, .. }
        ));
        write(&path, &orig);

        // Head deleted; head garbled.
        std::fs::remove_file(head_path(&path)).unwrap();
        assert!(matches!(check(&path), Verification::Broken { ref problem, .. } if problem.contains("no head file")));
        let no_head = VerifyOptions { no_head: true, ..Default::default() };
        assert!(matches!(
            verify_with(std::slice::from_ref(&path), no_head).unwrap(),
            Verification::Ok { records: 20, .. }
        ));
        std::fs::write(head_path(&path), b"{garbage").unwrap();
        assert!(matches!(check(&path), Verification::Broken { ref problem, .. } if problem.contains("garbled")));
        std::fs::write(head_path(&path), &head).unwrap();
        assert!(matches!(check(&path), Verification::Ok { records: 20, .. }));
    }

    #[test]
    fn opening_a_log_that_does_not_match_its_head_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_with(8, dir.path());
        let orig = lines(&path);
        let head = std::fs::read(head_path(&path)).unwrap();
        let refused = |p: &Path| AuditLog::open(p, 0).err().map(|e| e.to_string()).unwrap_or_default();

        // Truncated, then restarted: the head is not silently rewritten.
        write(&path, &orig[..5]);
        assert!(refused(&path).contains("ends at seq 5 but its head says 8"), "{}", refused(&path));
        assert_eq!(std::fs::read(head_path(&path)).unwrap(), head, "the head is left as it was");
        write(&path, &orig);
        // Head deleted, head garbled.
        std::fs::remove_file(head_path(&path)).unwrap();
        assert!(refused(&path).contains("head file is missing"));
        std::fs::write(head_path(&path), b"nonsense").unwrap();
        assert!(refused(&path).contains("garbled"));
        // The log deleted, its head left.
        std::fs::write(head_path(&path), &head).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(refused(&path).contains("the log is missing"));
        // Intact: opens and continues.
        write(&path, &orig);
        let mut log = AuditLog::open(&path, 0).unwrap();
        log.append("config", json!({}), 0).unwrap();
        assert!(matches!(verify(&[path]).unwrap(), Verification::Ok { records: 9, .. }));
    }

    #[test]
    fn a_crash_between_record_and_head_is_not_tampering() {
        let dir = tempfile::tempdir().unwrap();
        // A crash right after the first record: a head written at creation (seq 0) lags it.
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path, 0).unwrap();
        let stale_head = std::fs::read(head_path(&path)).unwrap();
        log.append("config", json!({"event": "loaded"}), 0).unwrap();
        drop(log);
        std::fs::write(head_path(&path), &stale_head).unwrap();
        assert!(matches!(verify(std::slice::from_ref(&path)).unwrap(), Verification::Ok { records: 1, .. }));
        AuditLog::open(&path, 0).unwrap();
        // And later: the head one record behind.
        let path = log_with(6, &dir.path().join("b"));
        let behind = std::fs::read(head_path(&path)).unwrap();
        let mut log = AuditLog::open(&path, 0).unwrap();
        log.append("breach", json!({"i": 6}), 0).unwrap();
        drop(log);
        std::fs::write(head_path(&path), &behind).unwrap();
        assert!(matches!(verify(std::slice::from_ref(&path)).unwrap(), Verification::Ok { records: 7, .. }));
        let mut log = AuditLog::open(&path, 0).unwrap();
        log.append("breach", json!({"i": 7}), 0).unwrap();
        assert!(matches!(verify(&[path]).unwrap(), Verification::Ok { records: 8, .. }));
    }

    #[test]
    fn rotation_keeps_the_chain_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path, 600).unwrap();
        for i in 0..12 {
            log.append("breach", json!({"i": i}), i).unwrap();
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("audit.log."))
            .filter(|p| !p.to_string_lossy().ends_with(".head"))
            .collect();
        assert!(files.len() >= 2, "rotated: {files:?}");
        files.sort_by_key(|p| p.extension().unwrap().to_string_lossy().parse::<u64>().unwrap());
        files.push(path.clone());
        assert_eq!(verify(&files).unwrap(), Verification::Ok { records: 12, first_seq: 1, last_seq: 12 });
        // Dropping a middle file breaks the link.
        let mut missing = files.clone();
        missing.remove(1);
        assert!(matches!(verify(&missing).unwrap(), Verification::Broken { .. }));
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-audit";

    fn keyed_log(n: u64, dir: &Path) -> PathBuf {
        let path = dir.join("audit.log");
        let mut log = AuditLog::open_keyed(&path, 0, Some(KEY.to_vec())).unwrap();
        for i in 0..n {
            log.append("breach", json!({"i": i}), 1_777_107_600_000 + i as i64).unwrap();
        }
        path
    }

    fn with_key(key: &[u8]) -> VerifyOptions {
        VerifyOptions { key: Some(key.to_vec()), ..VerifyOptions::default() }
    }

    fn problem(v: Verification) -> String {
        match v {
            Verification::Broken { problem, .. } => problem,
            Verification::Ok { .. } => panic!("not detected"),
        }
    }

    /// Recomputes every hash of the log and its head as someone who can write `state_dir`
    /// would, with `key` (None: unkeyed), after editing record `edit`'s data.
    fn forge(path: &Path, key: Option<&[u8]>, edit: u64) {
        let mut prev = GENESIS.to_string();
        let mut out = Vec::new();
        let mut last = 0;
        for l in lines(path) {
            let mut r: Record = serde_json::from_str(&l).unwrap();
            if r.seq == edit {
                r.data = json!({"i": "forged"});
            }
            r.prev = prev.clone();
            r.mac = key.map(|_| MAC.to_string());
            r.hash = expected_hash(&r, key);
            prev = r.hash.clone();
            last = r.seq;
            out.push(serde_json::to_string(&r).unwrap());
        }
        write(path, &out);
        write_head(path, &Head { seq: last, hash: prev, keyed: key.is_some(), chain: None, topic_seq: None }).unwrap();
    }

    #[test]
    fn a_keyed_chain_verifies_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = keyed_log(5, dir.path());
        assert!(lines(&path).iter().all(|l| l.contains(r#""mac":"hmac-sha256""#)));
        assert_eq!(
            verify_with(std::slice::from_ref(&path), with_key(KEY)).unwrap(),
            Verification::Ok { records: 5, first_seq: 1, last_seq: 5 }
        );
        assert!(problem(verify(std::slice::from_ref(&path)).unwrap()).contains("--key-file"));
        assert!(
            problem(verify_with(std::slice::from_ref(&path), with_key(b"another key of thirty-two bytes!!")).unwrap())
                .contains("wrong key")
        );
        // Reopening continues the keyed chain.
        let mut log = AuditLog::open_keyed(&path, 0, Some(KEY.to_vec())).unwrap();
        log.append("config", json!({}), 0).unwrap();
        assert_eq!(
            verify_with(&[path], with_key(KEY)).unwrap(),
            Verification::Ok { records: 6, first_seq: 1, last_seq: 6 }
        );
    }

    #[test]
    fn a_whole_rewrite_is_caught_by_the_key_but_not_without_one() {
        // Unkeyed: an edit with every hash and the head recomputed passes; that is the limitation.
        let dir = tempfile::tempdir().unwrap();
        let path = log_with(5, dir.path());
        forge(&path, None, 3);
        assert!(matches!(verify(&[path]).unwrap(), Verification::Ok { .. }), "an unkeyed chain can be recomputed");
        // Keyed: the same rewrite, without the key (unkeyed, or under a guessed key), is caught.
        for forged_key in [None, Some(&b"a guessed key of 32 bytes at least"[..])] {
            let dir = tempfile::tempdir().unwrap();
            let path = keyed_log(5, dir.path());
            forge(&path, forged_key, 3);
            let p = problem(verify_with(std::slice::from_ref(&path), with_key(KEY)).unwrap());
            assert!(p.contains("rewritten") || p.contains("MAC does not match"), "{p}");
            assert!(AuditLog::open_keyed(&path, 0, Some(KEY.to_vec())).is_err(), "run refuses it too");
        }
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open_keyed(&dir.path().join("audit.log"), 0, Some(KEY.to_vec())).unwrap();
        let text = format!("{log:?} {:?}", with_key(KEY));
        assert!(text.contains("keyed: true"), "{text}");
        assert!(!text.contains("48, 49") && !text.contains("0123456789abcdef"), "{text}");
    }

    #[test]
    fn run_refuses_to_mix_keyed_and_unkeyed() {
        let dir = tempfile::tempdir().unwrap();
        let unkeyed = log_with(2, dir.path());
        let e = AuditLog::open_keyed(&unkeyed, 0, Some(KEY.to_vec())).unwrap_err().to_string();
        assert!(e.contains("unkeyed but audit.key is set"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let keyed = keyed_log(2, dir.path());
        let e = AuditLog::open(&keyed, 0).unwrap_err().to_string();
        assert!(e.contains("keyed (HMAC) but no audit.key"), "{e}");
        let e = AuditLog::open_keyed(&keyed, 0, Some(b"the wrong key, thirty-two bytes!".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong key"), "{e}");
        // A new keyed chain with no record yet (only its seq-0 head) is keyed too.
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("audit.log");
        drop(AuditLog::open_keyed(&fresh, 0, Some(KEY.to_vec())).unwrap());
        assert!(AuditLog::open(&fresh, 0).is_err());
    }
}
