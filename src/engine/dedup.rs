//! Remembered event ids of one deployment, for duplicate detection (CONDITIONS.md Duplicates:
//! an id is remembered for ≥ 1h of engine clock **and** at least the last 1,000,000 ids of the
//! deployment).
//!
//! The spec's "at least the last 1,000,000 per deployment" means that with many deployments
//! nearly every id of a long stream must be held, so the cost per id is what matters. An id is
//! held as a 64-bit fingerprint in *generations*: each generation is one sorted `Vec<u64>`
//! (8 bytes an id, and ≈ 0.25 for its prefix [`Directory`], which makes a lookup one or two cache
//! misses), fed from a small hash set of the newest ids that is merged into it when it reaches
//! 1/16 of the generation (so the set adds ≈ 1 byte an id and a merge moves ≈ 16 keys per id). Whole generations are dropped, oldest first, once every id in them is
//! older than the horizon and the rest still holds `min_ids`. A generation is closed once it
//! holds `min_ids / 4` ids and spans a quarter of the horizon, so at most about six are ever
//! searched and at most about a quarter more ids than required are held.
//!
//! With a spill directory (`state_dir/dedup`, see [`Spill`]) the sorted keys leave memory in runs
//! of [`Spill::run_len`] ids: each run is written to a file of little-endian u64s and replaced in
//! memory by a [`Segment`] index of ≈ 2.1 bytes an id (a 16-bit tag per key, the bits after its
//! bucket, and a u32 fence per ≈ 64 keys). A lookup finds the key's bucket, compares tags, and only
//! on a tag match (≈ 1 in 1,000 new ids, and every true duplicate) reads the candidate keys from the
//! file, so the answer stays exact. Runs are merged pairwise once the newer is at least half the
//! older (a binary counter: about log2(ids / run_len) segments per generation, each id rewritten
//! about as often). The indexes share one budget (`engine.dedup_index_mb`): past it a deployment
//! that spills drops its oldest indexes, and lookups in those segments read the key's two bucket
//! fences and then the bucket's ≈ 64 keys from the file, so memory stays flat however many ids
//! are held. Files are a cache of memory, not state: they are not fsync'd, are removed with
//! their segment, and the directory is emptied when a process opens it. A failed write keeps the
//! run in memory; a failed read answers "not seen" (the event is applied, never dropped); both are
//! counted (`ddtwatch_dedup_spill_errors_total`).
//!
//! A fingerprint collision would make a new event look like a duplicate: with N ids held the
//! chance for one new id is N / 2^64 (≈ 5·10^-14 at the spec's 1,000,000).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::Millis;

/// Identity hasher for fingerprints that are already uniformly distributed.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ *b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The 64-bit fingerprint of an event id (SipHash-1-3 with fixed keys: stable across runs and
/// processes, so a replay is deterministic).
pub(crate) fn fingerprint(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Smallest and largest merge batch of the newest ids.
const MIN_PENDING: usize = 64;
const MAX_PENDING: usize = 8192;

/// Where sorted runs of remembered ids go when they leave memory (one per engine, shared by its
/// segments, which keep its counts as they come and go).
#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    /// Ids per run written out (the in-memory sorted keys of a generation reach this, then spill).
    run_len: usize,
    /// Bytes of segment indexes (tags and fences) kept in memory over all deployments; past it a
    /// deployment that spills drops its oldest segments' indexes, which are then read from their
    /// files (two reads a lookup). This is what keeps memory flat however many ids are held.
    index_budget: u64,
    next_file: AtomicU64,
    /// Failed writes (the run stayed in memory) and failed reads (answered "not seen").
    errors: AtomicU64,
    /// Ids held on disk now.
    spilled_ids: AtomicU64,
    /// Bytes of segment indexes in memory now.
    index_bytes: AtomicU64,
}

/// A reading of a [`Spill`]'s counters (all zero without one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillCounts {
    pub ids_on_disk: u64,
    pub index_bytes: u64,
    pub errors: u64,
}

impl Spill {
    /// Ids per spilled run: 1,024 (8 KiB), so the keys still in memory average ≈ 4 KiB a
    /// deployment.
    pub const RUN_LEN: usize = 1024;

    /// Uses `dir` (created; any file left there by an earlier process is removed: the runs are a
    /// cache of that process's memory, which a restart does not restore).
    pub fn open(dir: &Path, run_len: usize, index_budget: u64) -> std::io::Result<Arc<Spill>> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        Ok(Arc::new(Spill {
            dir: dir.to_path_buf(),
            run_len: run_len.max(1),
            index_budget,
            next_file: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            spilled_ids: AtomicU64::new(0),
            index_bytes: AtomicU64::new(0),
        }))
    }

    pub fn counts(&self) -> SpillCounts {
        SpillCounts {
            ids_on_disk: self.spilled_ids.load(Ordering::Relaxed),
            index_bytes: self.index_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn error(&self, what: &str, path: &Path, e: &std::io::Error) {
        // The first few are logged (the path holds a counter, no event or deployment id).
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            tracing::warn!(path = %path.display(), error = %e, "dedup spill: {what} failed");
        }
    }

    fn over_budget(&self) -> bool {
        self.index_bytes.load(Ordering::Relaxed) > self.index_budget
    }

    /// Writes `keys` (sorted) and their bucket fences to a new file; None (and counted) if that
    /// fails. The segment's index starts in memory.
    fn write(self: &Arc<Self>, keys: &[u64]) -> Option<Segment> {
        let path = self.dir.join(format!("{:016x}.ids", self.next_file.fetch_add(1, Ordering::Relaxed)));
        let bits = Segment::bits_for(keys.len());
        let index = Index::build(bits, keys);
        let mut bytes = Vec::with_capacity(keys.len() * 8 + index.fences.len() * 4);
        for k in keys {
            bytes.extend_from_slice(&k.to_le_bytes());
        }
        for f in &index.fences {
            bytes.extend_from_slice(&f.to_le_bytes());
        }
        match std::fs::write(&path, &bytes) {
            Ok(()) => {
                self.spilled_ids.fetch_add(keys.len() as u64, Ordering::Relaxed);
                self.index_bytes.fetch_add(index.bytes(), Ordering::Relaxed);
                Some(Segment { spill: self.clone(), path, len: keys.len(), bits, index: Some(index) })
            }
            Err(e) => {
                self.error("write", &path, &e);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }
}

fn le_u64(c: &[u8]) -> u64 {
    u64::from_le_bytes(c.try_into().expect("8 bytes"))
}

/// A sorted run of keys held in a file (the keys, then the bucket fences as u32), with its index
/// in memory unless the budget evicted it. Dropping it removes the file and its counts.
#[derive(Debug)]
struct Segment {
    spill: Arc<Spill>,
    path: PathBuf,
    len: usize,
    /// Bucket = the key's top `bits` bits (0 bits: one bucket), about 64 keys a bucket.
    bits: u32,
    index: Option<Index>,
}

/// The in-memory index of a segment.
#[derive(Debug)]
struct Index {
    /// fences[b]..fences[b + 1] are the indices of bucket b's keys.
    fences: Box<[u32]>,
    /// The 16 bits after the bucket bits, per key (sorted within a bucket, as the keys are).
    tags: Box<[u16]>,
}

impl Index {
    fn build(bits: u32, keys: &[u64]) -> Index {
        let mut fences = vec![0u32; (1usize << bits) + 1];
        for &k in keys {
            fences[Segment::bucket(bits, k) + 1] += 1;
        }
        for b in 1..fences.len() {
            fences[b] += fences[b - 1];
        }
        let tags = keys.iter().map(|&k| Segment::tag(bits, k)).collect();
        Index { fences: fences.into(), tags }
    }

    fn bytes(&self) -> u64 {
        (self.tags.len() * 2 + self.fences.len() * 4) as u64
    }
}

impl Segment {
    fn bits_for(len: usize) -> u32 {
        (len / 64).max(1).ilog2()
    }

    fn bucket(bits: u32, k: u64) -> usize {
        if bits == 0 { 0 } else { (k >> (64 - bits)) as usize }
    }

    fn tag(bits: u32, k: u64) -> u16 {
        ((k << bits) >> 48) as u16
    }

    fn fence_count(&self) -> usize {
        (1usize << self.bits) + 1
    }

    /// Every key, in order (None, counted, if the file cannot be read whole).
    fn read_all(&self) -> Option<Vec<u64>> {
        let expected = self.len * 8 + self.fence_count() * 4;
        let read = std::fs::read(&self.path).and_then(|b| {
            if b.len() == expected {
                Ok(b[..self.len * 8].chunks_exact(8).map(le_u64).collect())
            } else {
                Err(std::io::Error::other(format!("{} bytes, expected {expected}", b.len())))
            }
        });
        read.map_err(|e| self.spill.error("read", &self.path, &e)).ok()
    }

    /// Whether `k` is in the file. With the index in memory, the file is read only on a tag
    /// match; without, the key's bucket fences and then the bucket's keys are read from it.
    /// A failed read answers false (counted).
    fn contains(&self, k: u64) -> bool {
        let b = Self::bucket(self.bits, k);
        // The candidate positions, if the index knows them.
        let known = match &self.index {
            None => None,
            Some(index) => {
                let (lo, hi) = (index.fences[b] as usize, index.fences[b + 1] as usize);
                let tags = &index.tags[lo..hi];
                let t = Self::tag(self.bits, k);
                let start = tags.partition_point(|&x| x < t);
                let end = start + tags[start..].partition_point(|&x| x == t);
                if end == start {
                    return false;
                }
                Some(lo + start..lo + end)
            }
        };
        let read = || -> std::io::Result<bool> {
            let f = std::fs::File::open(&self.path)?;
            let range = match known {
                Some(r) => r,
                None => {
                    let mut fence = [0u8; 8];
                    f.read_exact_at(&mut fence, (self.len * 8 + b * 4) as u64)?;
                    let lo = u32::from_le_bytes(fence[..4].try_into().expect("4 bytes")) as usize;
                    let hi = u32::from_le_bytes(fence[4..].try_into().expect("4 bytes")) as usize;
                    if lo > hi || hi > self.len {
                        return Err(std::io::Error::other(format!("bucket {b}: fences {lo}..{hi} of {}", self.len)));
                    }
                    lo..hi
                }
            };
            let mut buf = vec![0u8; range.len() * 8];
            f.read_exact_at(&mut buf, range.start as u64 * 8)?;
            Ok(buf.chunks_exact(8).any(|c| le_u64(c) == k))
        };
        read().unwrap_or_else(|e| {
            self.spill.error("read", &self.path, &e);
            false
        })
    }

    /// Merges two segments into one new file (None, both kept, if a read or the write fails).
    /// Two segments whose index was on disk make one whose index is on disk.
    fn merge(a: &Segment, b: &Segment) -> Option<Segment> {
        let (x, y) = (a.read_all()?, b.read_all()?);
        let mut out = Vec::with_capacity(x.len() + y.len());
        let (mut i, mut j) = (0, 0);
        while i < x.len() && j < y.len() {
            if x[i] < y[j] {
                out.push(x[i]);
                i += 1;
            } else {
                out.push(y[j]);
                j += 1;
            }
        }
        out.extend_from_slice(&x[i..]);
        out.extend_from_slice(&y[j..]);
        let mut merged = a.spill.write(&out)?;
        if a.index.is_none() || b.index.is_none() {
            merged.evict();
        }
        Some(merged)
    }

    /// Drops the in-memory index (the file has the fences).
    fn evict(&mut self) {
        if let Some(i) = self.index.take() {
            self.spill.index_bytes.fetch_sub(i.bytes(), Ordering::Relaxed);
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.evict();
        self.spill.spilled_ids.fetch_sub(self.len as u64, Ordering::Relaxed);
        // A cache file: nothing is lost if this fails (an emptied directory at the next start).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, Default)]
struct Generation {
    /// Sorted fingerprints still in memory (merged batches), and their directory.
    sorted: Vec<u64>,
    directory: Directory,
    /// Runs spilled to files, oldest (largest) first.
    spilled: Vec<Segment>,
    /// Engine clock of the first and the latest insertion.
    first: Millis,
    last: Millis,
}

impl Generation {
    fn spilled_len(&self) -> usize {
        self.spilled.iter().map(|s| s.len).sum()
    }

    fn len(&self) -> usize {
        self.sorted.len() + self.spilled_len()
    }

    /// `in_memory`: false when the sorted keys surely lack `k` (the [`Filter`] said so), and only
    /// the spilled segments are searched.
    fn contains(&self, k: u64, in_memory: bool) -> bool {
        (in_memory && self.directory.contains(&self.sorted, k)) || self.spilled.iter().rev().any(|seg| seg.contains(k))
    }

    /// Writes the in-memory keys out once they are a full run, then merges the newest segments
    /// while the newer is at least half the older.
    fn spill(&mut self, sp: &Arc<Spill>) {
        if self.sorted.len() < sp.run_len {
            return;
        }
        let Some(seg) = sp.write(&self.sorted) else { return };
        self.spilled.push(seg);
        self.sorted = Vec::new();
        self.directory = Directory::default();
        while let [.., a, b] = &self.spilled[..] {
            if b.len * 2 < a.len {
                break;
            }
            let Some(m) = Segment::merge(a, b) else { break };
            let n = self.spilled.len();
            self.spilled.truncate(n - 2);
            self.spilled.push(m);
        }
    }
}

/// Where each fingerprint prefix starts in a generation's sorted keys, so a lookup reads one
/// entry here and then a bucket of ≈ [`KEYS_PER_PREFIX`] keys (one or two cache lines) instead of
/// binary-searching a multi-megabyte array (≈ log2(n) cache misses, the engine's largest cost on
/// a one-deployment replay before this). `starts[p]` is the index of the first key whose top
/// `bits` bits are ≥ p, for the 2^bits + 1 prefixes; ≈ 0.25 byte an id. Fingerprints are uniform
/// on u64, so buckets hold about the mean; a skewed set only makes its buckets' binary searches
/// longer, and the answer is exact for any sorted keys.
#[derive(Debug, Default)]
struct Directory {
    starts: Vec<u32>,
    /// 64 − bits (64: one prefix, the whole array).
    shift: u32,
}

/// Mean keys per prefix of a [`Directory`].
const KEYS_PER_PREFIX: usize = 16;

impl Directory {
    /// The directory of `keys` (sorted; none past u32 indexes, where the whole array is searched).
    fn build(keys: &[u64]) -> Directory {
        if u32::try_from(keys.len()).is_err() {
            return Directory::default();
        }
        let bits = (keys.len() / KEYS_PER_PREFIX).max(1).ilog2();
        let shift = 64 - bits;
        let prefixes = 1u64 << bits;
        let mut starts = Vec::with_capacity(prefixes as usize + 1);
        let mut i = 0;
        for p in 0..=prefixes {
            while i < keys.len() && keys[i].checked_shr(shift).unwrap_or(0) < p {
                i += 1;
            }
            starts.push(i as u32);
        }
        Directory { starts, shift }
    }

    /// Whether `k` is in `keys`, the sorted keys this was built from.
    fn contains(&self, keys: &[u64], k: u64) -> bool {
        let bucket = match self.starts.len() {
            0 => keys,
            _ => {
                let p = k.checked_shr(self.shift).unwrap_or(0) as usize;
                &keys[self.starts[p] as usize..self.starts[p + 1] as usize]
            }
        };
        bucket.binary_search(&k).is_ok()
    }
}

/// A blocked Bloom filter over the fingerprints a [`Dedup`] holds in memory: three bits in one
/// 64-bit word a key, ≈ 8 bits a key, so a key never inserted passes with a chance of ≈ 3–4%.
/// Nearly every lookup is of a new id, which must otherwise be searched for in every generation
/// (several cache misses each); the filter answers most of them with one.
#[derive(Debug, Default)]
struct Filter {
    words: Vec<u64>,
    /// Keys inserted, and how many it was sized for.
    len: usize,
    capacity: usize,
}

/// Bits of [`Filter`] a key.
const FILTER_BITS_PER_KEY: usize = 8;

/// In-memory keys from which a deployment's ids get a [`Filter`] (≈ 1 byte an id more): below,
/// its few generations are searched quickly enough. Lower in unit tests, so they exercise it.
const FILTER_MIN: usize = if cfg!(test) { 200 } else { 65_536 };

impl Filter {
    fn with_capacity(keys: usize) -> Filter {
        Filter { words: vec![0; (keys * FILTER_BITS_PER_KEY).div_ceil(64).max(1)], len: 0, capacity: keys }
    }

    /// The key's word (its low 32 bits scaled to the length) and its three bits (from its top 18).
    fn slot(&self, k: u64) -> (usize, u64) {
        let word = ((k & 0xFFFF_FFFF) * self.words.len() as u64) >> 32;
        let bits = 1u64 << (k >> 58) | 1u64 << ((k >> 52) & 63) | 1u64 << ((k >> 46) & 63);
        (word as usize, bits)
    }

    fn insert(&mut self, k: u64) {
        let (w, bits) = self.slot(k);
        self.words[w] |= bits;
        self.len += 1;
    }

    /// False only if `k` was never inserted.
    fn may_contain(&self, k: u64) -> bool {
        let (w, bits) = self.slot(k);
        self.words[w] & bits == bits
    }
}

#[derive(Debug, Default)]
pub(crate) struct Dedup {
    /// Oldest first; the newest ids are in `pending` and belong to the last generation.
    generations: VecDeque<Generation>,
    pending: HashSet<u64, BuildHasherDefault<Identity>>,
    len: usize,
    /// Over every key of `generations`' sorted arrays and `pending` (once they hold
    /// [`FILTER_MIN`]); spilled keys are looked up in their segments as before.
    filter: Option<Filter>,
}

impl Dedup {
    /// How many ids are remembered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains(&self, k: u64) -> bool {
        if self.pending.contains(&k) {
            return true;
        }
        let in_memory = self.filter.as_ref().is_none_or(|f| f.may_contain(k));
        self.generations.iter().rev().any(|g| g.contains(k, in_memory))
    }

    /// Keys in memory (sorted arrays and pending).
    fn in_memory(&self) -> usize {
        self.pending.len() + self.generations.iter().map(|g| g.sorted.len()).sum::<usize>()
    }

    /// A fresh filter over every key in memory, with room for as many again (none below
    /// [`FILTER_MIN`]).
    fn rebuild_filter(&mut self) {
        let keys = self.in_memory();
        if keys < FILTER_MIN {
            self.filter = None;
            return;
        }
        let mut f = Filter::with_capacity(2 * keys);
        for k in self.pending.iter().chain(self.generations.iter().flat_map(|g| &g.sorted)) {
            f.insert(*k);
        }
        self.filter = Some(f);
    }

    /// Remembers `k` (seen at engine clock `now`); false if it was already remembered.
    /// `horizon` in ms and `min_ids` are CONDITIONS.md's ≥ 1h and ≥ 1,000,000; full sorted runs
    /// go to `spill` if there is one.
    pub(crate) fn insert(
        &mut self,
        k: u64,
        now: Millis,
        horizon: i64,
        min_ids: usize,
        spill: Option<&Arc<Spill>>,
    ) -> bool {
        if self.contains(k) {
            return false;
        }
        let close_at = (min_ids / 4).max(1);
        let open_new = match self.generations.back() {
            None => true,
            Some(g) => g.len() + self.pending.len() >= close_at && now - g.first >= horizon / 4,
        };
        if open_new {
            self.merge_pending(spill);
            self.generations.push_back(Generation { first: now, last: now, ..Generation::default() });
        }
        let g = self.generations.back_mut().expect("a generation is open");
        g.last = g.last.max(now);
        let merge_at = (g.sorted.len() / 16).clamp(MIN_PENDING, MAX_PENDING);
        self.pending.insert(k);
        self.len += 1;
        if let Some(f) = &mut self.filter {
            f.insert(k);
            if f.len > f.capacity {
                self.rebuild_filter();
            }
        }
        if self.pending.len() >= merge_at {
            self.merge_pending(spill);
        }
        self.expire(now, horizon, min_ids);
        true
    }

    /// Drops whole generations whose every id is older than the horizon, while the rest still
    /// holds at least `min_ids`.
    fn expire(&mut self, now: Millis, horizon: i64, min_ids: usize) {
        while self.generations.len() > 1 {
            let g = &self.generations[0];
            if now - g.last <= horizon || self.len - g.len() < min_ids {
                break;
            }
            self.len -= g.len();
            self.generations.pop_front();
            // The dropped keys leave the filter too (else it fills up with them).
            if self.filter.is_some() {
                self.rebuild_filter();
            }
        }
    }

    /// Merges the pending ids into the newest generation's sorted keys, spilling a full run.
    fn merge_pending(&mut self, spill: Option<&Arc<Spill>>) {
        if self.pending.is_empty() {
            return;
        }
        let Some(g) = self.generations.back_mut() else { return };
        let mut fresh: Vec<u64> = self.pending.drain().collect();
        fresh.sort_unstable();
        // In place, from the back: the array grows by exactly the batch (realloc, often without a
        // copy) instead of a fresh allocation each merge, which fragmented the heap.
        let sorted = &mut g.sorted;
        let old_len = sorted.len();
        sorted.reserve_exact(fresh.len());
        sorted.resize(old_len + fresh.len(), 0);
        let (mut i, mut j) = (old_len, fresh.len());
        for k in (0..sorted.len()).rev() {
            if j == 0 {
                break;
            }
            if i > 0 && sorted[i - 1] > fresh[j - 1] {
                sorted[k] = sorted[i - 1];
                i -= 1;
            } else {
                sorted[k] = fresh[j - 1];
                j -= 1;
            }
        }
        if let Some(sp) = spill {
            g.spill(sp);
        }
        g.directory = Directory::build(&g.sorted);
        if let Some(sp) = spill {
            // Over the index budget: this deployment's oldest indexes go to disk first.
            let mut resident =
                self.generations.iter_mut().flat_map(|g| g.spilled.iter_mut()).filter(|s| s.index.is_some());
            while sp.over_budget() {
                let Some(seg) = resident.next() else { break };
                seg.evict();
            }
        }
        if self.filter.is_none() && self.in_memory() >= FILTER_MIN {
            self.rebuild_filter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_second_insert_is_a_duplicate() {
        let mut d = Dedup::default();
        assert!(d.insert(fingerprint("a"), 0, 3_600_000, 1_000_000, None));
        assert!(!d.insert(fingerprint("a"), 1, 3_600_000, 1_000_000, None));
        assert!(d.insert(fingerprint("b"), 2, 3_600_000, 1_000_000, None));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn ids_are_kept_for_the_horizon_then_dropped_in_generations() {
        // min_ids 0: only the horizon (10 s) applies.
        let mut d = Dedup::default();
        for i in 0..20_000u64 {
            d.insert(fingerprint(&i.to_string()), i as i64, 10_000, 0, None);
        }
        // The last 10 s (ids 10,000..20,000) must be remembered; old generations were dropped.
        for i in 9_999..20_000u64 {
            assert!(d.contains(fingerprint(&i.to_string())), "id {i} inside the horizon");
        }
        assert!(d.len() < 20_000, "expired generations are dropped ({} held)", d.len());
        assert!(!d.contains(fingerprint("0")));
    }

    #[test]
    fn the_last_min_ids_are_kept_however_old() {
        let mut d = Dedup::default();
        for i in 0..10_000u64 {
            d.insert(fingerprint(&i.to_string()), i as i64 * 1000, 1000, 4000, None);
        }
        for i in 6_000..10_000u64 {
            assert!(d.contains(fingerprint(&i.to_string())), "id {i} among the last 4000");
        }
        assert!(d.len() >= 4000 && d.len() <= 6000, "{} held", d.len());
    }

    /// Memory stays near 8 bytes an id: the sorted generations hold every id once.
    #[test]
    fn sorted_generations_hold_each_id_once() {
        let mut d = Dedup::default();
        for i in 0..100_000u64 {
            d.insert(fingerprint(&i.to_string()), 0, 3_600_000, 1_000_000, None);
        }
        let sorted: usize = d.generations.iter().map(|g| g.sorted.len()).sum();
        assert_eq!(sorted + d.pending.len(), 100_000);
        assert!(d.pending.len() <= 100_000 / 16 + 1);
        for g in &d.generations {
            assert!(g.sorted.windows(2).all(|w| w[0] < w[1]));
        }
    }

    /// At the spec's million ids a generation holds, and on keys clustered into a few prefixes:
    /// the same answers as a binary search of the whole array.
    #[test]
    fn directory_search_of_a_million_keys_equals_binary_search() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut keys: Vec<u64> = (0..1_000_000).map(|_| next()).collect();
        // Half the keys squeezed into the bottom 2^-20 of the range: one huge bucket.
        let clustered: Vec<u64> = keys.iter().map(|k| if k % 2 == 0 { k >> 20 } else { *k }).collect();
        for set in [&mut keys, &mut clustered.clone()] {
            set.sort_unstable();
            set.dedup();
            let dir = Directory::build(set);
            assert_eq!(dir.starts.len(), (1 << (set.len() / KEYS_PER_PREFIX).ilog2()) + 1);
            for i in (0..set.len()).step_by(97) {
                assert!(dir.contains(set, set[i]), "key {i}");
                let near = set[i].wrapping_add(1);
                assert_eq!(dir.contains(set, near), set.binary_search(&near).is_ok());
            }
            for _ in 0..20_000 {
                let p = next();
                assert_eq!(dir.contains(set, p), set.binary_search(&p).is_ok());
            }
        }
    }

    /// The filter never forgets a key, and lets through few it never saw (≈ 3–4% at its
    /// capacity; the bound leaves room for chance).
    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let mut f = Filter::with_capacity(1_000_000);
        let keys: Vec<u64> = (0..1_000_000u64).map(|i| fingerprint(&format!("in-{i}"))).collect();
        keys.iter().for_each(|k| f.insert(*k));
        assert!(keys.iter().all(|k| f.may_contain(*k)));
        let passed = (0..200_000u64).filter(|i| f.may_contain(fingerprint(&format!("out-{i}")))).count();
        let rate = passed as f64 / 200_000.0;
        assert!(rate < 0.05, "false positive rate {rate}");
    }

    /// A deployment past `FILTER_MIN` ids gets its filter, and still finds every id it holds
    /// across generations, merges and expiry.
    #[test]
    fn a_filtered_dedup_finds_every_id_it_holds() {
        let mut d = Dedup::default();
        let key = |i: u64| fingerprint(&format!("e{i}"));
        // 20 ids a second for 3 hours, horizon 1 h, min_ids 10,000: generations close and expire.
        for i in 0..216_000u64 {
            assert!(d.insert(key(i), (i / 20) as i64 * 1000, 3_600_000, 10_000, None), "id {i} is new");
        }
        assert!(d.filter.is_some());
        assert!(d.generations.len() > 1);
        // Every id still held (the last hour and more) is a duplicate; older ones were dropped.
        let held = d.len() as u64;
        for i in (216_000 - held)..216_000 {
            assert!(d.contains(key(i)), "id {i} held");
        }
        assert!(!d.contains(key(1_000_000)));
    }

    proptest! {
        /// The directory search answers as a plain binary search, for uniform and skewed keys,
        /// at every size (including none, and sizes around the prefix-count steps).
        #[test]
        fn directory_search_equals_binary_search(
            mut keys in proptest::collection::vec(prop_oneof![any::<u64>(), 0u64..1000, (u64::MAX - 1000)..=u64::MAX], 0..3000),
            probes in proptest::collection::vec(prop_oneof![any::<u64>(), 0u64..1000, (u64::MAX - 1000)..=u64::MAX], 1..200),
        ) {
            keys.sort_unstable();
            keys.dedup();
            let dir = Directory::build(&keys);
            for p in probes.iter().chain(keys.iter().step_by(7)) {
                prop_assert_eq!(dir.contains(&keys, *p), keys.binary_search(p).is_ok());
            }
        }

        /// Against a brute-force model that keeps every (id, time): everything the spec says must
        /// be remembered is (≥ horizon and ≥ the last min_ids), nothing never inserted is, and
        /// at most a quarter more than required plus one generation's worth is held.
        #[test]
        fn remembers_what_the_spec_requires(
            steps in proptest::collection::vec((0u32..400, 0i64..50), 1..3000),
            horizon in 1i64..500,
            min_ids in 0usize..300,
            spill_run in proptest::option::of(1usize..40),
            budget in prop_oneof![Just(0u64), 0u64..4000, Just(u64::MAX)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let spill = spill_run.map(|r| Spill::open(&dir.path().join("dedup"), r, budget).unwrap());
            let mut d = Dedup::default();
            let mut seen: Vec<(u32, i64)> = Vec::new();
            let mut now = 0i64;
            for (id, dt) in steps {
                now += dt;
                let k = fingerprint(&id.to_string());
                let fresh = d.insert(k, now, horizon, min_ids, spill.as_ref());
                // Required to be remembered: inserted within the horizon or among the last min_ids.
                let required = seen.iter().rev().enumerate().any(|(i, (s, t))| {
                    *s == id && (now - t <= horizon || i < min_ids)
                });
                let ever = seen.iter().any(|(s, _)| *s == id);
                if required {
                    prop_assert!(!fresh, "id {id} had to be remembered");
                }
                if !ever {
                    prop_assert!(fresh, "id {id} was never inserted");
                }
                if fresh {
                    seen.push((id, now));
                }
                prop_assert_eq!(d.len(), d.generations.iter().map(Generation::len).sum::<usize>() + d.pending.len());
            }
            if let Some(sp) = &spill {
                // One file per live segment, and the disk count is what the segments hold.
                let segments: usize = d.generations.iter().map(|g| g.spilled.len()).sum();
                prop_assert_eq!(std::fs::read_dir(&sp.dir).unwrap().count(), segments);
                let on_disk: usize = d.generations.iter().map(Generation::spilled_len).sum();
                prop_assert_eq!(sp.counts().ids_on_disk as usize, on_disk);
                let resident: u64 = d.generations.iter().flat_map(|g| &g.spilled).filter_map(|s| s.index.as_ref()).map(Index::bytes).sum();
                prop_assert_eq!(sp.counts().index_bytes, resident);
                // One deployment: it evicts its own indexes until under the budget.
                prop_assert!(resident <= budget, "{resident} index bytes over a budget of {budget}");
                prop_assert_eq!(sp.counts().errors, 0);
                // Forgetting the deployment removes its files and counts.
                drop(d);
                prop_assert_eq!(std::fs::read_dir(&sp.dir).unwrap().count(), 0);
                prop_assert_eq!(sp.counts(), SpillCounts::default());
            }
        }

        /// A segment's tag index never loses a key: every key of the run is a candidate (found
        /// in the file), and a key outside it is not found.
        #[test]
        fn a_segment_finds_exactly_its_keys(
            mut keys in proptest::collection::vec(prop_oneof![any::<u64>(), 0u64..5000], 1..3000),
            probes in proptest::collection::vec(any::<u64>(), 1..300),
        ) {
            keys.sort_unstable();
            keys.dedup();
            let dir = tempfile::tempdir().unwrap();
            let sp = Spill::open(dir.path(), 1, u64::MAX).unwrap();
            let mut seg = sp.write(&keys).unwrap();
            // With the index in memory, then read from the file.
            for resident in [true, false] {
                if !resident {
                    seg.evict();
                    prop_assert_eq!(sp.counts().index_bytes, 0);
                }
                for k in &keys {
                    prop_assert!(seg.contains(*k), "key {k} lost (index in memory: {resident})");
                }
                for p in &probes {
                    prop_assert_eq!(seg.contains(*p), keys.binary_search(p).is_ok());
                }
            }
            prop_assert_eq!(seg.read_all().unwrap(), keys);
        }
    }

    /// With a spill, the ids in memory stay within one run (plus the pending batch) while a
    /// deployment remembers 100,000, in about log2(100,000 / run) segments; the answers equal the
    /// in-memory set's, duplicates included.
    #[test]
    fn spilled_ids_leave_memory_and_answer_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let sp = Spill::open(&dir.path().join("dedup"), 1024, u64::MAX).unwrap();
        let (mut on, mut off) = (Dedup::default(), Dedup::default());
        for i in 0..120_000u64 {
            // Every 7th insert repeats an id from far back (a re-delivery).
            let id = if i % 7 == 6 { (i * 7919) % (i / 2 + 1) } else { i };
            let k = fingerprint(&id.to_string());
            assert_eq!(
                on.insert(k, 0, 3_600_000, 1_000_000, Some(&sp)),
                off.insert(k, 0, 3_600_000, 1_000_000, None),
                "insert {i}"
            );
        }
        assert_eq!(on.len(), off.len());
        let g = &on.generations[0];
        assert_eq!(on.generations.len(), 1);
        assert!(g.sorted.len() < 1024 + MAX_PENDING, "{} keys still in memory", g.sorted.len());
        assert!(g.spilled_len() > 90_000, "{} keys on disk", g.spilled_len());
        assert!(g.spilled.len() <= 8, "{} segments", g.spilled.len());
        let index_bytes: u64 = g.spilled.iter().map(|s| s.index.as_ref().unwrap().bytes()).sum();
        assert!(index_bytes as f64 / (g.spilled_len() as f64) < 2.2, "{index_bytes} index bytes");
        assert_eq!(sp.counts().errors, 0);
    }

    /// Many deployments share one index budget: the indexes in memory stay near it while ids on
    /// disk keep growing, and every answer equals the in-memory set's.
    #[test]
    fn the_index_budget_bounds_memory_over_many_deployments() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 64 << 10;
        let sp = Spill::open(&dir.path().join("dedup"), 256, budget).unwrap();
        let mut on: Vec<Dedup> = (0..40).map(|_| Dedup::default()).collect();
        let mut off: Vec<Dedup> = (0..40).map(|_| Dedup::default()).collect();
        let mut peak = 0;
        for i in 0..200_000u64 {
            let d = (i % 40) as usize;
            let id = if i % 11 == 10 { (i * 7919) % (i / 2 + 1) } else { i };
            let k = fingerprint(&id.to_string());
            let (a, b) =
                (on[d].insert(k, 0, 3_600_000, 1_000_000, Some(&sp)), off[d].insert(k, 0, 3_600_000, 1_000_000, None));
            assert_eq!(a, b, "insert {i}");
            peak = peak.max(sp.counts().index_bytes);
        }
        let on_disk = sp.counts().ids_on_disk;
        assert!(on_disk > 150_000, "{on_disk} ids on disk");
        // Unbudgeted, the indexes would be ≈ 2.1 bytes × ids on disk (≈ 350 KB).
        assert!(peak <= 2 * budget, "index bytes peaked at {peak}, budget {budget}");
        let evicted =
            on.iter().flat_map(|d| &d.generations).flat_map(|g| &g.spilled).filter(|s| s.index.is_none()).count();
        assert!(evicted > 0, "some indexes were read from disk");
        assert_eq!(sp.counts().errors, 0);
    }

    /// Faults a real disk seldom gives: the directory vanishes. Writes then fail and the run stays
    /// in memory (still found); reads of vanished files answer "not seen" (applied, not dropped).
    /// Both are counted.
    #[test]
    fn a_vanished_spill_directory_keeps_ids_in_memory_and_counts_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dedup");
        let sp = Spill::open(&path, 64, u64::MAX).unwrap();
        let mut d = Dedup::default();
        let key = |i: u64| fingerprint(&format!("e{i}"));
        for i in 0..1000 {
            assert!(d.insert(key(i), 0, 3_600_000, 1_000_000, Some(&sp)));
        }
        assert!(d.generations[0].spilled_len() > 0);
        std::fs::remove_dir_all(&path).unwrap();
        let before = sp.counts().errors;
        for i in 1000..2000 {
            assert!(d.insert(key(i), 0, 3_600_000, 1_000_000, Some(&sp)));
        }
        assert!(sp.counts().errors > before, "failed writes are counted");
        // Ids that could not be written are still remembered.
        for i in 1900..2000 {
            assert!(!d.insert(key(i), 0, 3_600_000, 1_000_000, Some(&sp)), "id {i} kept in memory");
        }
        // An id only in a vanished file is answered "not seen", and counted.
        let spilled_id = (0..1000)
            .find(|&i| !d.pending.contains(&key(i)) && d.generations[0].sorted.binary_search(&key(i)).is_err())
            .unwrap();
        let before = sp.counts().errors;
        assert!(!d.contains(key(spilled_id)));
        assert_eq!(sp.counts().errors, before + 1);
    }

    /// Files left by an earlier process are removed when the directory is opened.
    #[test]
    fn opening_empties_the_spill_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0000000000000000.ids"), [0u8; 8]).unwrap();
        let _sp = Spill::open(dir.path(), 8, u64::MAX).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
