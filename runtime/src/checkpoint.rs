//! Checkpoints of private training: each party keeps its own shares of the model and the optimizer state on its own
//! disk, and the three parties resume from the last step they all hold.
//!
//! **File.** `party{id}-step{steps:010}.ckpt` in the party's checkpoint directory: a magic and format version, the
//! party id, the model name, the SGD steps taken, the party's protocol step counter (PRF nonces continue from it),
//! its pieces of the flat parameter share, of the momentum buffer (if any) and of the batch-norm running statistics,
//! the model owner's `num_batches_tracked` counters, and a BLAKE3 checksum of all of it. A checkpoint holds one
//! party's pieces only: a single file reveals nothing about the model (pieces are uniformly random); two parties'
//! files together would, like two parties' memory.
//!
//! **Atomic.** The file is written to a temporary name in the same directory, flushed to disk (`fsync`), renamed
//! into place and the directory synced: a crash leaves either the old set of checkpoints or the new one, never a
//! half-written file under a checkpoint name. The two newest checkpoints are kept (the parties may have crashed
//! between writing step `s` and all of them holding it).
//!
//! **Resume.** [`Trainer::resume_party`]: in one round every party sends the steps of its valid checkpoints to both
//! peers; all three then load the largest step they all hold (or start from scratch when there is none). A resumed
//! run continues the protocol step counter from the checkpoint's (or above this session's current one, never
//! below), so with the same keys and data it computes exactly what the uninterrupted run computes, and with fresh
//! keys (every real deployment) no PRF stream of the session repeats.

use crate::party::Party;
use crate::share::Share;
use crate::training::{TrainState, Trainer};
use crate::{Error, PartyId, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"cryptgpu-ckpt\0\0\x01";
/// Checkpoints kept per party (the newest ones).
pub const KEEP: usize = 2;

/// One party's training state as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The party whose pieces these are.
    pub party: PartyId,
    /// The model's name (a checkpoint of another model is refused).
    pub model: String,
    /// The party's protocol step counter when the checkpoint was written.
    pub protocol_step: u64,
    /// The training state (SGD steps taken: [`TrainState::steps`]).
    pub state: TrainState,
}

fn file_name(party: PartyId, steps: usize) -> String {
    format!("party{party}-step{steps:010}.ckpt")
}

fn ckpt_err(path: &Path, problem: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.display().to_string(), problem: problem.into() }
}

/// Little-endian writer of the checkpoint body.
struct Body(Vec<u8>);

impl Body {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn share(&mut self, s: &Share) {
        self.u64(s.shape().len() as u64);
        for &d in s.shape() {
            self.u64(d as u64);
        }
        for &w in s.mine().iter().chain(s.next().iter()) {
            self.u64(w);
        }
    }
}

/// Reader of the checkpoint body; every read is bounds-checked (a corrupt file is an error, never a panic).
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| ckpt_err(self.path, format!("ends inside {what}: the file is truncated")))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    /// `n` items of `unit` bytes must fit in what is left of the file.
    fn items(&self, n: u64, unit: usize, what: &str) -> Result<usize> {
        let left = (self.data.len() - self.at) as u64;
        if n.checked_mul(unit as u64).is_none_or(|b| b > left) {
            return Err(ckpt_err(self.path, format!("declares {n} items of {what}, more than the file holds")));
        }
        Ok(n as usize)
    }
    fn len(&mut self, what: &str, unit: usize) -> Result<usize> {
        let n = self.u64(what)?;
        self.items(n, unit, what)
    }
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>> {
        let n = self.len(what, 1)?;
        Ok(self.take(n, what)?.to_vec())
    }
    fn share(&mut self, what: &str) -> Result<Share> {
        let rank = self.len(what, 8)?;
        let shape = (0..rank).map(|_| self.u64(what).map(|d| d as usize)).collect::<Result<Vec<_>>>()?;
        let n = crate::tensor::numel(&shape)?;
        self.items(n as u64, 16, what)?;
        let mut read = |k: usize| (0..k).map(|_| self.u64(what)).collect::<Result<Vec<u64>>>();
        let mine = read(n)?;
        let next = read(n)?;
        Ok(Share::from_pieces(&shape, mine, next))
    }
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut b = Body(MAGIC.to_vec());
        b.u64(self.party as u64);
        b.bytes(self.model.as_bytes());
        b.u64(self.state.steps as u64);
        b.u64(self.protocol_step);
        b.share(&self.state.params);
        b.u64(self.state.velocity.is_some() as u64);
        if let Some(v) = &self.state.velocity {
            b.share(v);
        }
        b.share(&self.state.running);
        match &self.state.tracked {
            None => b.u64(u64::MAX),
            Some(t) => {
                b.u64(t.len() as u64);
                for (k, v) in t {
                    b.bytes(k.as_bytes());
                    b.u64(v.to_bits());
                }
            }
        }
        let sum = blake3::hash(&b.0);
        b.0.extend_from_slice(sum.as_bytes());
        b.0
    }

    fn decode(data: &[u8], path: &Path) -> Result<Checkpoint> {
        if data.len() < MAGIC.len() + 32 || &data[..MAGIC.len()] != MAGIC {
            return Err(ckpt_err(path, "is not a cryptgpu checkpoint (wrong magic or format version)"));
        }
        let (body, sum) = data.split_at(data.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(ckpt_err(path, "fails its checksum: the file is corrupt or truncated"));
        }
        let mut r = Reader { data: body, at: MAGIC.len(), path };
        let party = r.u64("the party id")? as usize;
        let model = String::from_utf8(r.bytes("the model name")?)
            .map_err(|_| ckpt_err(path, "has a model name that is not UTF-8"))?;
        let steps = r.u64("the step count")? as usize;
        let protocol_step = r.u64("the protocol step")?;
        let params = r.share("the parameter share")?;
        let velocity = match r.u64("the momentum flag")? {
            0 => None,
            1 => Some(r.share("the momentum share")?),
            f => return Err(ckpt_err(path, format!("has an invalid momentum flag {f}"))),
        };
        let running = r.share("the running statistics")?;
        let tracked = match r.u64("the batch counters")? {
            u64::MAX => None,
            n => {
                let n = r.items(n, 16, "the batch counters")?;
                let mut t = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = String::from_utf8(r.bytes("a batch counter's name")?)
                        .map_err(|_| ckpt_err(path, "has a batch counter name that is not UTF-8"))?;
                    t.push((k, f64::from_bits(r.u64("a batch counter")?)));
                }
                Some(t)
            }
        };
        if r.at != body.len() {
            return Err(ckpt_err(path, format!("has {} unexpected bytes after its content", body.len() - r.at)));
        }
        let state = TrainState { params, velocity, running, tracked, steps };
        Ok(Checkpoint { party, model, protocol_step, state })
    }

    /// Read and verify a checkpoint file (magic, checksum, structure).
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let data = std::fs::read(path).map_err(|e| ckpt_err(path, format!("cannot be read: {e}")))?;
        Checkpoint::decode(&data, path)
    }
}

/// Write `data` to `path` atomically: a temporary file in the same directory, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint")));
    let io = |what: &str, e: std::io::Error| ckpt_err(path, format!("could not be written ({what}: {e})"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(data).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync of the directory", e))
}

/// The steps of this party's checkpoints in `dir` that verify, newest last (corrupt files are skipped).
pub fn valid_steps(dir: &Path, party: PartyId, model: &str) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let prefix = format!("party{party}-step");
    let mut steps: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let steps: usize = name.strip_prefix(&prefix)?.strip_suffix(".ckpt")?.parse().ok()?;
            let c = Checkpoint::read(&e.path()).ok()?;
            (c.party == party && c.model == model && c.state.steps == steps).then_some(steps)
        })
        .collect();
    steps.sort_unstable();
    steps
}

impl Trainer {
    /// Write this party's state into `dir` (created if needed) as `party{id}-step{steps}.ckpt`, atomically, and keep
    /// only the [`KEEP`] newest of its checkpoints there. Returns the file's path. Local: no message.
    pub fn save_checkpoint(&self, p: &Party, state: &TrainState, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, format!("cannot be created: {e}")))?;
        let c = Checkpoint {
            party: p.id(),
            model: self.graph().name().to_string(),
            protocol_step: p.step(),
            state: state.clone(),
        };
        let path = dir.join(file_name(p.id(), state.steps));
        write_atomic(&path, &c.encode())?;
        let steps = valid_steps(dir, p.id(), self.graph().name());
        for &old in steps.iter().rev().skip(KEEP) {
            let _ = std::fs::remove_file(dir.join(file_name(p.id(), old)));
        }
        Ok(path)
    }

    /// Agree with the peers on the newest checkpoint all three hold in their `dir`s (one round: each sends the
    /// steps of its valid checkpoints) and load this party's. `None` when they hold none in common (start from the
    /// initial parameters). The protocol step counter continues from the checkpoint's, never below the current.
    pub fn resume_party(&self, p: &mut Party, dir: &Path) -> Result<Option<TrainState>> {
        let mine = valid_steps(dir, p.id(), self.graph().name());
        let words: Vec<u64> = mine.iter().map(|&s| s as u64).collect();
        let (prev, next) = (p.prev(), p.next());
        // Lengths differ per party: first the counts, then the lists.
        let count = vec![words.len() as u64];
        let counts = p.round(vec![(prev, count.clone().into()), (next, count.into())], &[(prev, 1), (next, 1)])?;
        let (np, nn) = (counts[0][0] as usize, counts[1][0] as usize);
        if np > 1 << 20 || nn > 1 << 20 {
            return Err(Error::Invalid(format!(
                "a peer reports {} checkpoints; at most {} are kept",
                np.max(nn),
                KEEP
            )));
        }
        let lists = p.round(vec![(prev, words.clone().into()), (next, words.into())], &[(prev, np), (next, nn)])?;
        let common = mine.iter().rev().find(|&&s| lists.iter().all(|l| l.contains(&(s as u64))));
        let Some(&steps) = common else { return Ok(None) };
        let path = dir.join(file_name(p.id(), steps));
        let c = Checkpoint::read(&path)?;
        if c.party != p.id() || c.model != self.graph().name() {
            return Err(ckpt_err(&path, format!("belongs to party {} of model `{}`", c.party, c.model)));
        }
        self.check_state(&c.state).map_err(|e| ckpt_err(&path, e.to_string()))?;
        p.continue_from_step(c.protocol_step);
        Ok(Some(c.state))
    }
}
