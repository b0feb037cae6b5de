//! A session: three parties with agreed keys, a backend and connections, and a way to run the same program on
//! each of them. The embedded default is three threads in this process over in-memory channels.

use crate::backend::{cpu::CpuBackend, Backend};
use crate::party::Party;
use crate::stats::PartyStats;
use crate::transport::{memory, Transport};
use crate::{Error, FixedPoint, PartyId, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Session settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Fractional bits of the fixed-point encoding (default 20).
    pub frac_bits: u32,
    /// Largest tensor (in elements) any protocol accepts (default 2^28).
    pub max_elements: usize,
    /// How long a party waits for a message before failing (default 120 s).
    pub timeout: Duration,
    /// Derive every key from this seed instead of operating-system randomness. INSECURE: for reproducible tests
    /// only; `None` (the default) uses fresh randomness.
    pub insecure_test_seed: Option<u64>,
    /// How fixed-point products are truncated (default: exact, never failing for |z| < 2^62 — except a division
    /// by a public non-power of two, e.g. 3×3 average pooling, which is probabilistic in every mode); a party can
    /// change it per layer with `Party::set_truncation`.
    pub truncation: crate::protocols::TruncationMode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frac_bits: crate::fixed::DEFAULT_FRAC_BITS,
            max_elements: 1 << 28,
            timeout: Duration::from_secs(120),
            insecure_test_seed: None,
            truncation: crate::protocols::TruncationMode::default(),
        }
    }
}

/// Three parties ready to run protocols.
pub struct Session {
    parties: [Mutex<Party>; 3],
    fixed: FixedPoint,
    max_elements: usize,
    abort: Arc<AtomicBool>,
    /// Serialises runs: recovery after a failed run needs every program of the session to have returned.
    running: Mutex<()>,
    /// Why the session cannot run again, once a failed run could not be cleaned up.
    broken: Mutex<Option<String>>,
    last_run: Mutex<(PartyStats, Duration)>,
}

impl Session {
    /// The embedded default: three threads of this process, in-memory channels, CPU backend.
    pub fn new(config: Config) -> Result<Session> {
        let abort = Arc::new(AtomicBool::new(false));
        let nets = memory::connect(config.timeout, abort.clone()).map(|t| Box::new(t) as Box<dyn Transport>);
        Session::build(config, nets, Arc::new(CpuBackend), abort)
    }

    /// The embedded default (three threads, in-memory channels) with every party launching its kernels on
    /// `backend` (one instance shared by the three parties, or what it gives each through [`Backend::for_party`]).
    pub fn with_backend(config: Config, backend: Arc<dyn Backend>) -> Result<Session> {
        let abort = Arc::new(AtomicBool::new(false));
        let nets = memory::connect(config.timeout, abort.clone()).map(|t| Box::new(t) as Box<dyn Transport>);
        Session::build(config, nets, backend, abort)
    }

    /// The embedded default over an emulated network: every message arrives `link.latency` after it was sent,
    /// no faster than `link.bandwidth` allows (see [`crate::transport::delay`]); for benchmarks at a given
    /// round-trip time.
    pub fn emulated(config: Config, link: crate::transport::delay::Link) -> Result<Session> {
        let abort = Arc::new(AtomicBool::new(false));
        let [a, b, c] = memory::connect(config.timeout, abort.clone());
        let wrap =
            |id, t| -> Result<Box<dyn Transport>> { Ok(Box::new(crate::transport::delay::Delayed::new(id, t, link)?)) };
        let nets = [wrap(0, a)?, wrap(1, b)?, wrap(2, c)?];
        Session::build(config, nets, Arc::new(CpuBackend), abort)
    }

    /// A session over the given connections (party `i` uses `transports[i]`), CPU backend. The session sets
    /// `abort` when a party fails and clears it after the run; transports that watch it (as
    /// [`memory::connect`]'s do) then stop waiting. The session stays usable after a failed run only when the
    /// transports implement [`Transport::reset`].
    pub fn with_transports(
        config: Config,
        transports: [Box<dyn Transport>; 3],
        abort: Arc<AtomicBool>,
    ) -> Result<Session> {
        Session::build(config, transports, Arc::new(CpuBackend), abort)
    }

    fn build(
        config: Config,
        nets: [Box<dyn Transport>; 3],
        backend: Arc<dyn Backend>,
        abort: Arc<AtomicBool>,
    ) -> Result<Session> {
        let fixed = FixedPoint::new(config.frac_bits)?;
        // Each party agrees its keys with its peers in its own thread, as it would in its own process.
        let built: Vec<Result<Party>> = std::thread::scope(|s| {
            let handles: Vec<_> = nets
                .into_iter()
                .enumerate()
                .map(|(id, net)| {
                    let (config, backend) = (&config, backend.clone());
                    s.spawn(move || {
                        // A device backend gives each party its own streams (or device).
                        let backend = backend.for_party(id)?.unwrap_or(backend);
                        Party::connect(id, config, net, backend)
                    })
                })
                .collect();
            handles.into_iter().enumerate().map(|(id, h)| h.join().unwrap_or_else(|p| Err(panicked(id, p)))).collect()
        });
        let mut built = built.into_iter().collect::<Result<Vec<_>>>()?.into_iter();
        let parties = core::array::from_fn(|_| Mutex::new(built.next().expect("three parties")));
        Ok(Session {
            parties,
            fixed,
            max_elements: config.max_elements,
            abort,
            running: Mutex::new(()),
            broken: Mutex::new(None),
            last_run: Mutex::new(Default::default()),
        })
    }

    /// The fixed-point encoding of the session.
    pub fn fixed(&self) -> FixedPoint {
        self.fixed
    }

    /// The truncation mode of fixed-point products (party 0's current mode; every party starts with
    /// [`Config::truncation`]).
    pub fn truncation(&self) -> crate::protocols::TruncationMode {
        lock(&self.parties[0]).truncation()
    }

    /// Largest tensor (in elements) the session's protocols accept ([`Config::max_elements`]).
    pub fn max_elements(&self) -> usize {
        self.max_elements
    }

    /// Refuse a tensor of `elements` over [`Config::max_elements`] with [`Error::TooLarge`] naming `what`: for
    /// drivers that allocate plaintext before any protocol sees it.
    pub fn check_size(&self, what: &str, elements: usize) -> Result<()> {
        if elements > self.max_elements {
            return Err(Error::TooLarge { what: what.into(), elements, limit: self.max_elements });
        }
        Ok(())
    }

    /// Run `program` on the three parties at once (one thread each) and return their results in party order.
    ///
    /// Fail fast, fail together: when a party's program panics or returns an error, the session sets `abort` at
    /// once and the others stop waiting within ~20 ms (in-memory transport); when a party's program returns while
    /// a peer still waits for one of its messages, that peer fails at once ([`Error::PeerFinished`]). The error
    /// returned is the root cause and names the party: [`Error::PartyPanicked`], or the failing party's own error
    /// wrapped as [`Error::Party`] (`party 1: cannot encode NaN …`; match the cause with [`Error::root`]) first,
    /// then `PeerFinished`, then transport failures; [`Error::Aborted`] of the bystanders last. Among errors of
    /// the same rank (e.g. the same shape error on every party) the lowest party's is returned.
    ///
    /// After a failed run the session recovers and stays usable: once every program has returned, every party's
    /// connections drop the messages still pending ([`Transport::reset`]), the state of the interrupted protocol
    /// call is forgotten, and every party's step counter continues from one common value above every step any
    /// party used. This is safe: (1) each PRF stream is named by (key, purpose, step) and steps only grow, so no
    /// mask or zero share of the next run repeats one of the failed run, even where the parties had reached
    /// different steps; (2) stale messages are discarded, so no message of the failed run is read as one of the
    /// next; (3) the parties' keys and shares of earlier runs are untouched. A session whose transports cannot
    /// discard pending messages refuses further runs after a failed one, with an error saying so.
    pub fn run<R: Send>(&self, program: impl Fn(&mut Party) -> Result<R> + Sync) -> Result<[R; 3]> {
        let _one_run_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = self.broken.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Err(Error::SessionBroken { why: why.clone() });
        }
        let start = Instant::now();
        let before = self.stats();
        let results: Vec<Result<R>> = std::thread::scope(|s| {
            let program = &program;
            let handles: Vec<_> = self
                .parties
                .iter()
                .enumerate()
                .map(|(id, p)| {
                    let abort = &self.abort;
                    s.spawn(move || {
                        let mut party = lock(p);
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program(&mut party)))
                            .unwrap_or_else(|payload| Err(panicked(id, payload)));
                        if r.is_err() {
                            abort.store(true, Ordering::SeqCst);
                        }
                        // Nothing more comes from this party in this run: a peer waiting for it fails at once. (It
                        // cannot fail for the memory transport; another transport's peers still see `abort`.)
                        let _ = party.finish_program();
                        r
                    })
                })
                .collect();
            handles.into_iter().enumerate().map(|(id, h)| h.join().unwrap_or_else(|p| Err(panicked(id, p)))).collect()
        });
        let elapsed = start.elapsed();
        *self.last_run.lock().unwrap_or_else(|e| e.into_inner()) = (minus(self.stats(), before), elapsed);
        let mut errors: Vec<(PartyId, Error)> = Vec::new();
        let mut out = Vec::with_capacity(3);
        for (id, r) in results.into_iter().enumerate() {
            match r {
                Ok(v) => out.push(v),
                Err(e) => errors.push((id, e)),
            }
        }
        self.end_run(!errors.is_empty());
        if !errors.is_empty() {
            // Report the root cause: a peer's transport error is a consequence of another party's failure. The sort
            // is stable: among equal ranks the lowest party comes first.
            errors.sort_by_key(|(_, e)| consequence_rank(e));
            let (party, e) = errors.remove(0);
            return Err(named(party, e));
        }
        Ok(out.try_into().unwrap_or_else(|_| unreachable!("three parties")))
    }

    /// After every run (all programs have returned): clear the connections; after a failed one also bring the
    /// parties back in step (see [`Session::run`]), or mark the session unusable when that is impossible.
    fn end_run(&self, failed: bool) {
        let mut parties: Vec<MutexGuard<'_, Party>> = self.parties.iter().map(lock).collect();
        let mut cleared = true;
        let mut reset_error = None;
        for p in parties.iter_mut() {
            match p.reset_connections() {
                Ok(true) => {}
                Ok(false) => cleared = false,
                Err(e) => {
                    cleared = false;
                    reset_error.get_or_insert(e);
                }
            }
        }
        let why = match (reset_error, failed && !cleared) {
            (Some(e), _) => Some(format!("its connections could not be cleared after a run: {e}")),
            (None, true) => Some("a run failed and its transports cannot discard that run's pending messages".into()),
            (None, false) => None,
        };
        if let Some(why) = why {
            *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            self.abort.store(true, Ordering::SeqCst);
            return;
        }
        if failed {
            let above = parties.iter().map(|p| p.step()).max().unwrap_or(0) + 1;
            for p in parties.iter_mut() {
                p.recover(above);
            }
        }
        self.abort.store(false, Ordering::SeqCst);
    }

    /// Communication of every party since the session started (key agreement excluded).
    pub fn stats(&self) -> PartyStats {
        PartyStats(core::array::from_fn(|i| lock(&self.parties[i]).total_stats()))
    }

    /// Communication and wall time of the last [`Session::run`].
    pub fn last_run(&self) -> (PartyStats, Duration) {
        *self.last_run.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn lock(p: &Mutex<Party>) -> MutexGuard<'_, Party> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn minus(a: PartyStats, b: PartyStats) -> PartyStats {
    PartyStats(core::array::from_fn(|i| a.0[i] - b.0[i]))
}

/// How far an error is from the root cause of a failed run (lower first).
fn consequence_rank(e: &Error) -> u8 {
    match e {
        Error::Aborted { .. } => 3,
        Error::Transport { .. } => 2,
        Error::PeerFinished { .. } => 1,
        _ => 0,
    }
}

/// `party`'s error, wrapped as [`Error::Party`] unless it already names the party that reported it.
fn named(party: PartyId, e: Error) -> Error {
    match e.party() {
        Some(_) => e,
        None => Error::Party { party, source: Box::new(e) },
    }
}

fn panicked(party: usize, payload: Box<dyn std::any::Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::PartyPanicked { party, message }
}
