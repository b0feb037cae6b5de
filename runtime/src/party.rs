//! A party: its id, connections, PRF keys, backend and communication accounting. Protocols are methods on
//! [`Party`] (in [`crate::protocols`]); they launch kernels and exchange messages through the helpers here.

use crate::backend::Backend;
use crate::buffer::Buffer;
use crate::prg::{PartyKeys, PrfKey, Purpose, Stream};
use crate::share::{next_party, prev_party, Share};
use crate::stats::Stats;
use crate::transport::Transport;
use crate::{Error, FixedPoint, PartyId, Result};
use cryptgpu_codegen::{GatherKernel, GemmKernel, MapKernel};
use std::sync::{Arc, Mutex};

/// Which PRF key a stream uses, named by who else holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWith {
    /// `k_i`, shared with the previous party.
    Prev,
    /// `k_{i+1}`, shared with the next party.
    Next,
    /// Known to all three parties.
    All,
    /// Known to this party alone.
    Own,
}

/// One piece of a party's view: a message (or one protocol's part of a message, when several ride in one round)
/// that the party sent or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEntry {
    /// The round of this party it belongs to (1 for the first round the party took part in).
    pub round: u64,
    /// The other party.
    pub peer: PartyId,
    /// `true` if this party received it, `false` if it sent it.
    pub received: bool,
    /// The words.
    pub words: Vec<u64>,
    /// `Some(k)`: not a message on the wire but the `k`-bit values this party read out of the packed piece it
    /// received just before from `peer` (the exact truncation's wrap terms, see [`crate::protocols::exact`]), one per
    /// element; only their low `k` bits carry anything. `None` for the words of a message as they travelled.
    pub unpacked_bits: Option<u32>,
}

/// A party's recorded view, in order (see [`Party::record_view`]).
pub type ViewLog = Arc<Mutex<Vec<ViewEntry>>>;

/// A callback told `(name, kind)` of every model step (a layer, a residual add, a set-up phase) as it starts: what a
/// progress display shows (`Executor::with_progress`).
pub type StepHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Rides held back for a later round (see [`Party::with_rides_held`]).
pub(crate) struct HeldRides {
    out: Vec<(PartyId, Buffer)>,
    expect: Vec<(PartyId, usize)>,
}

/// One of the three parties of a session.
pub struct Party {
    id: PartyId,
    fixed: FixedPoint,
    max_elements: usize,
    net: Box<dyn Transport>,
    keys: PartyKeys,
    step: u64,
    backend: Arc<dyn Backend>,
    total: Stats,
    depth: u32,
    call_start: Stats,
    last_call: Stats,
    /// Words to append to the next round's message to a peer (another protocol riding along).
    ride_out: Vec<(PartyId, Buffer)>,
    /// Words expected at the end of the next round's message from a peer.
    ride_expect: Vec<(PartyId, usize)>,
    /// What arrived for `ride_expect` in the last round, in registration order.
    ride_in: Vec<Buffer>,
    /// How fixed-point products are truncated.
    pub(crate) truncation: crate::protocols::TruncationMode,
    /// The bits the model layer's ReLUs read (see [`Party::set_relu_bits`]).
    pub(crate) relu_bits: crate::protocols::SignBits,
    /// Packed message words filled so far (the counter of this party's [`crate::prg::Purpose::Padding`] stream).
    pub(crate) padding_draws: u64,
    /// A ReLU announced for the next exact-truncated product ([`Party::expect_relu`]).
    pub(crate) pending_relu: Option<crate::protocols::relu::PendingRelu>,
    /// That ReLU once its first round has ridden in the truncation's second.
    pub(crate) early_relu: Option<crate::protocols::relu::EarlyRelu>,
    /// Whether the exact truncation of a product runs fused into the product's kernel (the default) or as the
    /// separate stages of the reference plan (see [`crate::protocols::exact`]).
    pub(crate) fused_truncation: bool,
    /// Buffers this party has finished with, for its next kernel outputs.
    pool: crate::buffer_pool::BufferPool,
    /// Where this party's view is recorded, if anywhere.
    view: Option<ViewLog>,
    /// Told the name and kind of every model step (layer) as it starts, if set.
    step_hook: Option<StepHook>,
    /// A deliberate privacy break switched on by a test (feature `mutations` only).
    #[cfg(feature = "mutations")]
    mutation: Option<crate::mutation::Mutation>,
}

impl Party {
    /// Tell `hook` about every model step this party starts from now on (`None`: stop).
    pub(crate) fn set_step_hook(&mut self, hook: Option<StepHook>) {
        self.step_hook = hook;
    }

    /// The step hook, if any.
    pub(crate) fn step_hook(&self) -> Option<StepHook> {
        self.step_hook.clone()
    }

    pub(crate) fn new(
        id: PartyId,
        fixed: FixedPoint,
        max_elements: usize,
        net: Box<dyn Transport>,
        keys: PartyKeys,
        backend: Arc<dyn Backend>,
    ) -> Party {
        Party {
            id,
            fixed,
            max_elements,
            net,
            keys,
            step: 0,
            backend,
            total: Stats::default(),
            depth: 0,
            call_start: Stats::default(),
            last_call: Stats::default(),
            ride_out: Vec::new(),
            ride_expect: Vec::new(),
            ride_in: Vec::new(),
            truncation: crate::protocols::TruncationMode::default(),
            relu_bits: crate::protocols::SignBits::default(),
            padding_draws: 0,
            pending_relu: None,
            early_relu: None,
            fused_truncation: true,
            pool: Default::default(),
            view: None,
            step_hook: None,
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }

    /// Record, from now on, every message piece this party sends and receives, each protocol's part of a shared
    /// round separately (its *view*, as the privacy tests examine it). Returns the log; recording stops with
    /// [`Party::stop_recording_view`].
    pub fn record_view(&mut self) -> ViewLog {
        let log = ViewLog::default();
        self.view = Some(log.clone());
        log
    }

    /// Stop recording this party's view.
    pub fn stop_recording_view(&mut self) {
        self.view = None;
    }

    /// Switch a deliberate privacy break on (or off with `None`) for this party's protocol calls. Test builds only.
    #[cfg(feature = "mutations")]
    pub fn set_mutation(&mut self, mutation: Option<crate::mutation::Mutation>) {
        self.mutation = mutation;
    }

    /// Whether the deliberate break `m` is on (always `false` without the `mutations` feature).
    #[inline(always)]
    #[allow(unused_variables)]
    pub(crate) fn mutated(&self, m: crate::mutation::Mutation) -> bool {
        #[cfg(feature = "mutations")]
        return self.mutation == Some(m);
        #[cfg(not(feature = "mutations"))]
        false
    }

    fn log_view(&self, peer: PartyId, received: bool, words: &[u64]) {
        if let (Some(log), false) = (&self.view, words.is_empty()) {
            let entry =
                ViewEntry { round: self.total.rounds, peer, received, words: words.to_vec(), unpacked_bits: None };
            log.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
        }
    }

    /// Whether this party records its view (privacy tests).
    pub(crate) fn records_view(&self) -> bool {
        self.view.is_some()
    }

    /// Record in the view the `k`-bit values this party unpacked from a piece received from `peer` (see
    /// [`ViewEntry::unpacked_bits`]): what it reads per element, so a privacy check can combine them with the
    /// element's other words.
    pub(crate) fn log_unpacked(&self, peer: PartyId, k: u32, values: &Buffer) -> Result<()> {
        if let (Some(log), false) = (&self.view, values.is_empty()) {
            let entry = ViewEntry {
                round: self.total.rounds,
                peer,
                received: true,
                words: values.host()?.to_vec(), // read on the host only when a view is recorded
                unpacked_bits: Some(k),
            };
            log.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
        }
        Ok(())
    }

    /// This party's id (0, 1 or 2).
    pub fn id(&self) -> PartyId {
        self.id
    }
    /// The fixed-point encoding of the session.
    pub fn fixed(&self) -> FixedPoint {
        self.fixed
    }
    /// Communication of this party since the session started.
    pub fn total_stats(&self) -> Stats {
        self.total
    }
    /// Communication of this party in the last completed protocol call.
    pub fn last_call_stats(&self) -> Stats {
        self.last_call
    }
    /// The backend kernels run on.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Run one protocol call, recording its communication as [`Party::last_call_stats`] (nested calls count
    /// towards the outermost one).
    pub(crate) fn call<R>(&mut self, f: impl FnOnce(&mut Party) -> Result<R>) -> Result<R> {
        if self.depth == 0 {
            self.call_start = self.total;
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        if self.depth == 0 {
            self.last_call = self.total - self.call_start;
        }
        r
    }

    /// Refuse tensors over the configured size limit.
    pub(crate) fn check_size(&self, what: &str, elements: usize) -> Result<()> {
        if elements > self.max_elements {
            return Err(Error::TooLarge { what: what.into(), elements, limit: self.max_elements });
        }
        Ok(())
    }

    /// The product of `factors` (an element count named `what`), refused when it overflows `usize` or exceeds
    /// the size limit: checked before anything of that size is allocated.
    pub(crate) fn check_product(&self, what: &str, factors: &[usize]) -> Result<usize> {
        let n = crate::tensor::checked_product(what, factors)?;
        self.check_size(what, n)?;
        Ok(n)
    }

    /// Advance the lock-step counter: every party calls this at the same protocol points, so the counter names
    /// the step and PRF nonces never repeat.
    pub(crate) fn next_step(&mut self) -> u64 {
        self.step += 1;
        self.step
    }

    /// The last step this party used (0 before any).
    pub(crate) fn step(&self) -> u64 {
        self.step
    }

    /// Wait until both peers reach their own `barrier` (one round of one word each way; counted in the stats like
    /// any round). Benchmarks call it to start a timed run at the same moment in every party.
    pub fn barrier(&mut self) -> Result<()> {
        let (prev, next) = (self.prev(), self.next());
        self.round(vec![(prev, vec![0].into()), (next, vec![0].into())], &[(prev, 1), (next, 1)]).map(|_| ())
    }

    /// Tell the peers this party's program has returned (see [`Transport::finish`]): a peer still waiting for one
    /// of its messages fails at once. [`crate::Session::run`] does this for its parties; a process running one
    /// party calls it when its program ends (successfully or not).
    pub fn finish_program(&mut self) -> Result<()> {
        self.net.finish()
    }

    /// Between runs: discard what is pending on the connections (see [`Transport::reset`]); false when the
    /// transport cannot.
    pub(crate) fn reset_connections(&mut self) -> Result<bool> {
        self.net.reset()
    }

    /// After a failed run (every program has returned, the connections are reset): forget the state of the
    /// interrupted protocol call and continue the step counter from `step`, which the session chooses above every
    /// step any party used, so no PRF stream (key, purpose, step) is ever used twice.
    pub(crate) fn recover(&mut self, step: u64) {
        debug_assert!(step > self.step);
        self.step = step;
        self.depth = 0;
        self.ride_out.clear();
        self.ride_expect.clear();
        self.ride_in.clear();
    }

    /// Continue the step counter from `step` (a checkpoint's), never going below the current one: with the
    /// session's keys no PRF stream repeats.
    pub(crate) fn continue_from_step(&mut self, step: u64) {
        self.step = self.step.max(step);
    }

    /// The stream of a key for `purpose` at `step`.
    pub(crate) fn stream(&self, key: KeyWith, purpose: Purpose, step: u64) -> Stream {
        let k: PrfKey = match key {
            KeyWith::Prev => self.keys.prev,
            KeyWith::Next => self.keys.next,
            KeyWith::All => self.keys.common,
            KeyWith::Own => self.keys.own,
        };
        Stream::new(k, purpose, step)
    }

    /// The party after this one.
    pub fn next(&self) -> PartyId {
        next_party(self.id)
    }
    /// The party before this one.
    pub fn prev(&self) -> PartyId {
        prev_party(self.id)
    }

    /// One communication round: send every `(to, words)`, then receive one message from each `(from, words)`
    /// with exactly that many words. Every party calls `round` at the same protocol points (also a party that
    /// only sends, or only receives), so all count the same rounds.
    ///
    /// Words registered with [`Party::ride_along`] / [`Party::expect_ride`] travel in the same round, appended to the
    /// messages (two protocols whose rounds are independent share them); what arrived is taken with
    /// [`Party::take_rides`].
    pub(crate) fn round(&mut self, sends: Vec<(PartyId, Buffer)>, recvs: &[(PartyId, usize)]) -> Result<Vec<Buffer>> {
        self.total.rounds += 1;
        if self.view.is_some() {
            for (to, words) in sends.iter().chain(&self.ride_out) {
                self.log_view(*to, false, words.host()?);
            }
        }
        // What is sent crosses to the host here (a download from a device backend), and only here.
        let mut sends: Vec<(PartyId, Vec<u64>)> =
            sends.into_iter().map(|(to, b)| Ok((to, b.into_host()?))).collect::<Result<_>>()?;
        for (to, extra) in std::mem::take(&mut self.ride_out) {
            match sends.iter_mut().find(|(t, _)| *t == to) {
                Some((_, words)) => words.extend_from_slice(extra.host()?),
                None => sends.push((to, extra.into_host()?)),
            }
        }
        let expect = std::mem::take(&mut self.ride_expect);
        // (peer, base words, extra words)
        let mut plan: Vec<(PartyId, usize, usize)> = recvs.iter().map(|&(f, l)| (f, l, 0)).collect();
        for &(from, len) in &expect {
            match plan.iter_mut().find(|(f, _, _)| *f == from) {
                Some((_, _, extra)) => *extra += len,
                None => plan.push((from, 0, len)),
            }
        }
        for (to, words) in sends {
            self.total.bytes_sent += 8 * words.len() as u64;
            self.total.messages += 1;
            self.net.send(to, words)?;
        }
        let mut base = Vec::with_capacity(recvs.len());
        let mut extras: Vec<(PartyId, Vec<u64>)> = Vec::new();
        for (i, &(from, len, extra)) in plan.iter().enumerate() {
            let mut words = self.net.recv(from)?;
            self.total.bytes_received += 8 * words.len() as u64;
            if words.len() != len + extra {
                return Err(Error::Protocol { party: self.id, peer: from, expected: len + extra, found: words.len() });
            }
            extras.push((from, words.split_off(len)));
            self.log_view(from, true, &words);
            if i < recvs.len() {
                let b = Buffer::from_host(words);
                self.backend.adopt(&b)?; // received words go to the device here, and only here
                base.push(b);
            }
        }
        // Hand out the riders in registration order (several from one peer arrive concatenated).
        self.ride_in.clear();
        for (from, len) in expect {
            let (_, buf) = extras.iter_mut().find(|(f, _)| *f == from).expect("planned above");
            let rest = buf.split_off(len);
            let ride = std::mem::replace(buf, rest);
            self.log_view(from, true, &ride);
            let ride = Buffer::from_host(ride);
            self.backend.adopt(&ride)?;
            self.ride_in.push(ride);
        }
        Ok(base)
    }

    /// Run `f` holding back what it registers to ride along or expects ([`Party::ride_along`],
    /// [`Party::expect_ride`]): the next round goes without it; [`Party::ride_later`] registers it for a later one.
    /// For a stage that is computed before a round but whose messages belong to the round after.
    pub(crate) fn with_rides_held<R>(&mut self, f: impl FnOnce(&mut Party) -> Result<R>) -> Result<(R, HeldRides)> {
        let (out, expect) = (std::mem::take(&mut self.ride_out), std::mem::take(&mut self.ride_expect));
        let r = f(self);
        let held = HeldRides {
            out: std::mem::replace(&mut self.ride_out, out),
            expect: std::mem::replace(&mut self.ride_expect, expect),
        };
        Ok((r?, held))
    }

    /// Register rides held by [`Party::with_rides_held`] for the next round (after any registered since).
    pub(crate) fn ride_later(&mut self, held: HeldRides) {
        self.ride_out.extend(held.out);
        self.ride_expect.extend(held.expect);
    }

    /// Whether this party's backend queues launches (see [`Backend::queues_launches`]).
    pub(crate) fn queues_launches(&self) -> bool {
        self.backend.queues_launches()
    }

    /// Send `words` to `to` in the next round, appended to whatever that round sends there.
    pub(crate) fn ride_along(&mut self, to: PartyId, words: Buffer) {
        self.ride_out.push((to, words));
    }

    /// Expect `len` extra words from `from` in the next round.
    pub(crate) fn expect_ride(&mut self, from: PartyId, len: usize) {
        self.ride_expect.push((from, len));
    }

    /// The extra words the last round brought, in the order they were expected.
    pub(crate) fn take_rides(&mut self) -> Vec<Buffer> {
        std::mem::take(&mut self.ride_in)
    }

    /// `count` buffers of `n` words for a kernel to write: the backend's memory on a device backend, else host
    /// vectors from this party's pool.
    fn outputs(&self, count: usize, n: usize) -> Result<Vec<Buffer>> {
        (0..count).map(|_| self.output(n)).collect()
    }

    /// One buffer of `n` words for a kernel to write.
    fn output(&self, n: usize) -> Result<Buffer> {
        Ok(self.backend.output(n)?.unwrap_or_else(|| Buffer::from_host(self.pool.take(n))))
    }

    /// Launch a map over `n` elements, returning its outputs.
    pub(crate) fn map(
        &self,
        k: &MapKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        n: usize,
    ) -> Result<Vec<Buffer>> {
        let mut outs = self.outputs(k.outputs.len(), n)?;
        let mut refs: Vec<&mut Buffer> = outs.iter_mut().collect();
        self.backend.map(k, inputs, params, streams, &mut refs)?;
        Ok(outs)
    }

    /// Public constant words of a protocol (a table) in the backend's memory (see [`Backend::constant`]).
    pub(crate) fn constant(&self, words: &[u64]) -> Result<Buffer> {
        self.backend.constant(words)
    }

    /// `n` zero words where this party's kernels write: the backend's (zeroed) memory, else a host vector.
    pub(crate) fn zeros(&self, n: usize) -> Result<Buffer> {
        Ok(self.backend.output(n)?.unwrap_or_else(|| Buffer::from_host(vec![0; n])))
    }

    /// Launch a map over `n` elements whose inputs are buffers or ranges of buffers ([`crate::backend::Source`]),
    /// returning its outputs.
    pub(crate) fn map_sources(
        &self,
        k: &MapKernel,
        inputs: &[crate::backend::Source<'_>],
        params: &[u64],
        streams: &[Stream],
        n: usize,
    ) -> Result<Vec<Buffer>> {
        let outs = self.outputs(k.outputs.len(), n)?;
        self.map_updating(k, inputs, params, streams, outs)
    }

    /// A buffer of the words `parts` name, one after the other, copied where they are (on the device of a device
    /// backend, else into a pooled host buffer).
    pub(crate) fn assemble(&self, parts: &[(&Buffer, std::ops::Range<usize>)]) -> Result<Buffer> {
        if parts.iter().any(|(b, _)| b.device().is_some()) {
            return crate::buffer::assemble(parts);
        }
        let total = parts.iter().map(|(_, r)| r.len()).sum();
        let mut out = self.pool.take(total);
        let mut at = 0;
        for (b, r) in parts {
            let words = b
                .host()?
                .get(r.clone())
                .ok_or_else(|| Error::Internal(format!("words {r:?} of a buffer of {} assembled", b.len())))?;
            out[at..at + words.len()].copy_from_slice(words);
            at += words.len();
        }
        Ok(Buffer::from_host(out))
    }

    /// Hand buffers this party has finished with to its pool (see [`crate::buffer_pool`]): the next kernel outputs
    /// are written into them instead of fresh allocations. (Device memory is freed.)
    pub(crate) fn recycle<B: Into<Buffer>>(&self, buffers: impl IntoIterator<Item = B>) {
        for b in buffers {
            if let Some(v) = b.into().into_host_only() {
                self.pool.give(v);
            }
        }
    }

    /// Make sure this party's pool holds `count` buffers of `n` words (see [`crate::buffer_pool::BufferPool::reserve`]).
    pub(crate) fn reserve_buffers(&self, count: usize, n: usize) {
        self.pool.reserve(count, n);
    }

    /// A copy of `v` where it is: in a pooled host buffer, or on the device (a message to send while keeping `v`).
    pub(crate) fn copy_of(&self, v: &Buffer) -> Buffer {
        if !v.on_host() {
            return v.clone();
        }
        let mut c = self.pool.take(v.len());
        c.copy_from_slice(v);
        Buffer::from_host(c)
    }

    /// Launch a map that updates `outs` in place: its inputs are buffers or the outputs' contents before the launch
    /// ([`crate::backend::Source::Prior`]), so values a stage no longer needs are overwritten by its results.
    pub(crate) fn map_updating(
        &self,
        k: &MapKernel,
        inputs: &[crate::backend::Source<'_>],
        params: &[u64],
        streams: &[Stream],
        mut outs: Vec<Buffer>,
    ) -> Result<Vec<Buffer>> {
        let mut refs: Vec<&mut Buffer> = outs.iter_mut().collect();
        self.backend.map_updating(k, inputs, params, streams, &mut refs)?;
        Ok(outs)
    }

    /// Launch a GEMM, returning its outputs.
    pub(crate) fn gemm(
        &self,
        k: &GemmKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
    ) -> Result<Vec<Buffer>> {
        // The size check before allocating; the backend validates the kernel itself (once, for every backend).
        let n = self.check_product(&format!("{} output", k.name), &[k.m, k.n])?;
        let mut outs = self.outputs(k.epilogue.outputs.len(), n)?;
        let mut refs: Vec<&mut Buffer> = outs.iter_mut().collect();
        self.backend.gemm(k, inputs, params, streams, &mut refs)?;
        Ok(outs)
    }

    /// Launch a bit transpose.
    pub(crate) fn bits(&self, k: &cryptgpu_codegen::BitKernel, input: &Buffer) -> Result<Buffer> {
        let mut out = self.output(k.out_len())?;
        self.backend.bits(k, input, &mut out)?;
        Ok(out)
    }

    /// Launch a gather on both pieces of a share (local: a gather is linear), the result viewed with `shape`.
    pub(crate) fn gather_share(&self, k: &GatherKernel, x: &Share, shape: &[usize]) -> Result<Share> {
        let (mine, next) = (self.gather(k, x.mine())?, self.gather(k, x.next())?);
        Share::from_pieces(&k.out_shape, mine, next).reshaped(shape).ok_or_else(|| Error::Shape {
            op: format!("gather `{}`", k.name),
            expected: format!("a shape of {} elements", k.out_len()),
            found: format!("{shape:?}"),
        })
    }

    /// Launch a gather.
    pub(crate) fn gather(&self, k: &GatherKernel, input: &Buffer) -> Result<Buffer> {
        // The size check before allocating (an overflowing count reads as usize::MAX and is refused); the backend
        // validates the kernel itself.
        self.check_size(&format!("{} output", k.name), k.out_len())?;
        let mut out = self.output(k.out_len())?;
        self.backend.gather(k, input, &mut out)?;
        Ok(out)
    }
}
