//! The runtime's error type: every failure a user can cause names what was expected and what was found.

use crate::PartyId;

/// Errors of the three-party runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A real number that has no fixed-point encoding.
    #[error("cannot encode {value} with {frac_bits} fractional bits: {reason}")]
    Encode {
        /// The offending value.
        value: f64,
        /// Fractional bits of the encoding.
        frac_bits: u32,
        /// Why (NaN, infinite, or the representable range).
        reason: String,
    },
    /// Operands whose shapes do not fit the operation.
    #[error("shape mismatch in {op}: expected {expected}, found {found}")]
    Shape {
        /// The operation.
        op: String,
        /// What it needs.
        expected: String,
        /// What it was given.
        found: String,
    },
    /// A tensor over the session's size limit.
    #[error("{what} has {elements} elements, more than the configured limit of {limit} (Config::max_elements)")]
    TooLarge {
        /// Which tensor.
        what: String,
        /// Its size.
        elements: usize,
        /// The limit.
        limit: usize,
    },
    /// A public divisor outside the supported range.
    #[error("divisor {divisor} is outside the supported range 1..=2^63-1 of division by a public integer")]
    DivisorOutOfRange {
        /// The divisor.
        divisor: u64,
    },
    /// An invalid configuration or argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A party id (of a role, an owner, a receiver) that is not 0, 1 or 2.
    #[error("{what} must be party 0, 1 or 2, found {found}")]
    PartyId {
        /// What the id names (`model owner`, `receiver`, `this party`, …).
        what: String,
        /// The id given.
        found: usize,
    },
    /// An owner's private input (the model's parameters, a batch of data) was missing at its owner, or supplied by
    /// another party: every party must pass what its role says (`Some` at the owner, `None` elsewhere).
    #[error("{}", ownership(.what, *.party, *.owner, *.supplied))]
    Ownership {
        /// What was (or was not) supplied: `parameters`, `data`.
        what: &'static str,
        /// The party that called.
        party: PartyId,
        /// The owner.
        owner: PartyId,
        /// Whether the calling party supplied it.
        supplied: bool,
    },
    /// A batch of zero samples.
    #[error("{what}: the batch must hold at least one sample")]
    EmptyBatch {
        /// Which batch.
        what: String,
    },
    /// A training label not below the model's class count.
    #[error("{what}: label {label} of sample {sample} is not below the model's {classes} classes")]
    Label {
        /// Which batch.
        what: String,
        /// The sample's index in its batch.
        sample: usize,
        /// The label.
        label: usize,
        /// The class count (the model's output width).
        classes: usize,
    },
    /// A training hyper-parameter that is not finite.
    #[error("SGD hyper-parameter `{name}` is {value}, not finite")]
    Hyperparameter {
        /// Its name (`lr`, `momentum`, `weight_decay`).
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// A tape, gradients or a shared model given to a driver whose model did not make them (another model's).
    #[error("model `{model}`: {problem}: it comes from another model")]
    ForeignState {
        /// The trainer's model.
        model: String,
        /// What was missing.
        problem: String,
    },
    /// A session that failed mid-run (its parties' streams are out of step) and cannot run again.
    #[error("this session cannot run again: {why}; create a new session")]
    SessionBroken {
        /// The failure that broke it.
        why: String,
    },
    /// A layer the private runtime does not support in this form.
    #[error("layer `{layer}` ({kind}): {reason}")]
    Unsupported {
        /// Full layer name.
        layer: String,
        /// Its kind.
        kind: String,
        /// What is not supported.
        reason: String,
    },
    /// A broken invariant of the runtime itself, never a consequence of input: a bug to report.
    #[error("internal error (a bug in cryptgpu; please report it): {0}")]
    Internal(String),
    /// The connection to a peer failed or timed out.
    #[error("party {party}: connection to party {peer} failed: {reason}")]
    Transport {
        /// This party.
        party: PartyId,
        /// The peer.
        peer: PartyId,
        /// What happened.
        reason: String,
    },
    /// A malformed, oversized, out-of-order or wrong-session frame arrived from a peer: the connection is out of
    /// step and the run ends.
    #[error("party {party}: bad frame from party {peer}: {problem}")]
    Frame {
        /// This party.
        party: PartyId,
        /// The sender.
        peer: PartyId,
        /// What was wrong.
        problem: crate::transport::frame::FrameProblem,
    },
    /// A peer could not be authenticated: wrong certificate, wrong party id in its hello, or a failed handshake.
    #[error("party {party}: refused the connection of {peer}: {reason}")]
    Peer {
        /// This party.
        party: PartyId,
        /// The peer: `party N (address)`, or `unidentified client (address)` before its certificate is known.
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// Connection set-up reached its deadline before every expected peer had connected. Clients refused meanwhile
    /// (not a peer, a certificate other than the pinned ones, a handshake or hello too slow) are counted, and the
    /// last one is named with the reason.
    #[error("party {party}: {} did not connect within {waited:?}{}", parties(.missing), refusals(*.refused, .last_refusal))]
    NotConnected {
        /// This party.
        party: PartyId,
        /// The peers that never completed set-up with this party.
        missing: Vec<PartyId>,
        /// The set-up timeout.
        waited: std::time::Duration,
        /// How many other clients were refused.
        refused: usize,
        /// The last refused client and why: `unidentified client (address): reason`.
        last_refusal: Option<String>,
    },
    /// A peer's program returned while this party still waited for one of its messages.
    #[error("party {peer} finished its program without sending the message party {party} expected")]
    PeerFinished {
        /// The waiting party.
        party: PartyId,
        /// The party whose program had returned.
        peer: PartyId,
    },
    /// This party stopped waiting because another party of the run failed (that party's error is the cause).
    #[error("party {party} stopped waiting for party {peer}: the run was aborted because another party failed")]
    Aborted {
        /// The waiting party.
        party: PartyId,
        /// The peer it waited for.
        peer: PartyId,
    },
    /// Element-count arithmetic on a shape overflowed `usize`.
    #[error("{what}: the element count of shape {shape:?} overflows usize")]
    Overflow {
        /// What was being sized.
        what: String,
        /// The shape (or the factors) whose product overflowed.
        shape: Vec<usize>,
    },
    /// A message of unexpected length arrived: the parties are not running the same protocol.
    #[error("party {party}: message from party {peer} has {found} words, expected {expected}")]
    Protocol {
        /// This party.
        party: PartyId,
        /// The sender.
        peer: PartyId,
        /// Expected words.
        expected: usize,
        /// Received words.
        found: usize,
    },
    /// A party's thread panicked.
    #[error("party {party} panicked: {message}")]
    PartyPanicked {
        /// The party.
        party: PartyId,
        /// The panic message.
        message: String,
    },
    /// A party's program failed with `source`: what [`crate::Session::run`] returns for the root cause of a failed
    /// run (use [`Error::root`] to match the cause, [`Error::party`] for the party).
    #[error("party {party}: {source}")]
    Party {
        /// The party whose program failed.
        party: PartyId,
        /// Its error.
        #[source]
        source: Box<Error>,
    },
    /// Randomness could not be obtained from the operating system.
    #[error("operating-system randomness unavailable: {0}")]
    Randomness(String),
    /// A CUDA library (the driver `libcuda` or NVRTC) could not be found or lacks a needed symbol.
    #[error("{library} is not available (searched: {searched}); {hint}")]
    NoCuda {
        /// Which library ("CUDA driver (libcuda)" or "NVRTC (libnvrtc)").
        library: String,
        /// Everything that was tried, with the loader's reason for each failure.
        searched: String,
        /// How to fix it.
        hint: String,
    },
    /// The CUDA driver loaded but there is no device with the requested ordinal.
    #[error("no CUDA device {ordinal}: the driver reports {count} device(s)")]
    NoDevice {
        /// The requested device ordinal.
        ordinal: usize,
        /// Devices the driver reports.
        count: usize,
    },
    /// NVRTC failed to compile a kernel; `log` is NVRTC's program log.
    #[error("NVRTC could not compile kernel {kernel} for {target}: {reason}\n{log}")]
    Nvrtc {
        /// The kernel's entry point.
        kernel: String,
        /// The compilation target (`sm_90`, `compute_90`, ...).
        target: String,
        /// NVRTC's result code or the reason the call was refused.
        reason: String,
        /// NVRTC's program log (empty when compilation never started).
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver call {call} failed: {reason}")]
    Cuda {
        /// The call (or step) that failed.
        call: String,
        /// The driver's error name and description.
        reason: String,
    },
    /// A value of a private inference could reach the ring's limit at the session's precision: refused by the
    /// model owner before anything was shared.
    #[error(transparent)]
    Range(Box<RangeViolation>),
    /// A ReLU's input could leave the declared sign range (`Executor::with_relu_bound`): its sign circuit reads
    /// only the bits that range needs and would give a wrong sign, so the model owner refuses the run before
    /// anything was shared.
    #[error(
        "model `{model}`: the input of layer `{layer}` (ReLU) can reach |x| ≈ {bound:.3e} ({method}), not below the \
         declared ReLU bound 2^{declared_bits}; declare a larger bound (Executor::with_relu_bound, --relu-bound) \
         or none (the full 64-bit sign circuit)"
    )]
    ReluBound {
        /// The model.
        model: String,
        /// The ReLU layer whose input exceeds the bound.
        layer: String,
        /// The largest |value| its input can reach (real units).
        bound: f64,
        /// The declared bound: |x| < 2^declared_bits (real units).
        declared_bits: u32,
        /// How the bound was obtained (interval bound or calibration), in words.
        method: String,
    },
    /// The run is predicted to fail too often for this model (any truncation under probabilistic truncation; in
    /// the exact mode the divisions by a non-power of two): refused by the model owner before anything was shared.
    #[error(transparent)]
    FailureProbability(Box<FailureRisk>),
    /// An input element is outside the declared public bound (or not finite): refused by the data owner before
    /// anything was shared.
    #[error("input element {index} is {value}, outside the declared bound |x| ≤ {bound:e} (Executor::with_input_bound); NaN and infinities are never in range")]
    InputRange {
        /// Flat index of the element in the batch.
        index: usize,
        /// Its value.
        value: f64,
        /// The declared bound.
        bound: f64,
    },
    /// A training checkpoint that cannot be written, read or used.
    #[error("checkpoint {path} {problem}")]
    Checkpoint {
        /// The file (or directory).
        path: String,
        /// What is wrong, in words.
        problem: String,
    },
    /// The model (graph, parameters, input) is not what the layer or the file needs: the model layer's own error,
    /// with the model's name.
    #[error("model `{model}`: {source}")]
    Model {
        /// The graph's name.
        model: String,
        /// What is wrong.
        #[source]
        source: Box<cryptgpu_dsl::DslError>,
    },
    /// A kernel failed validation or was launched with wrong arguments.
    #[error(transparent)]
    Kernel(#[from] cryptgpu_codegen::Error),
}

/// `party 2`, `parties 1 and 2`.
fn parties(ids: &[PartyId]) -> String {
    match ids {
        [one] => format!("party {one}"),
        _ => format!("parties {}", ids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" and ")),
    }
}

/// `party 1 owns the parameters but supplied none`, `party 0 supplied data owned by party 2`.
fn ownership(what: &str, party: PartyId, owner: PartyId, supplied: bool) -> String {
    if supplied {
        format!("party {party} supplied {what} owned by party {owner}")
    } else {
        format!("party {owner} owns the {what} but supplied none")
    }
}

/// `` (none), `; 2 other clients were refused meanwhile, the last: ...`.
fn refusals(count: usize, last: &Option<String>) -> String {
    match (count, last) {
        (0, _) | (_, None) => String::new(),
        (1, Some(last)) => format!("; 1 other client was refused meanwhile: {last}"),
        (n, Some(last)) => format!("; {n} other clients were refused meanwhile, the last: {last}"),
    }
}

impl Error {
    /// The cause: `source` of [`Error::Party`] (through any nesting), `self` for every other error. Match on it to
    /// test what failed whether or not the error came out of [`crate::Session::run`]:
    /// `matches!(e.root(), Error::Shape { .. })`.
    pub fn root(&self) -> &Error {
        let mut e = self;
        while let Error::Party { source, .. } = e {
            e = source;
        }
        e
    }

    /// The party whose program returned this error: the wrapped party of [`Error::Party`], and the reporting
    /// party of the errors that name it themselves ([`Error::PartyPanicked`], [`Error::Protocol`],
    /// [`Error::Transport`], [`Error::PeerFinished`] and [`Error::Aborted`], whose `party` is the one that stopped
    /// waiting); `None` for an error raised outside a party's program (e.g. a driver's checks before the run).
    pub fn party(&self) -> Option<PartyId> {
        match self {
            Error::Party { party, .. }
            | Error::PartyPanicked { party, .. }
            | Error::Protocol { party, .. }
            | Error::Transport { party, .. }
            | Error::Frame { party, .. }
            | Error::Peer { party, .. }
            | Error::NotConnected { party, .. }
            | Error::PeerFinished { party, .. }
            | Error::Aborted { party, .. } => Some(*party),
            _ => None,
        }
    }
}

/// What [`Error::Range`] reports: the first layer whose bound reaches 2^62, the bound, and the largest safe `t`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "model `{model}`: layer `{layer}` ({kind}) can reach {bound:.3e} ≈ 2^{:.1} in the ring at t = {frac_bits}, \
     not below the limit {limit:.3e} = 2^62 ({method}); {}",
    .bound.log2(),
    range_advice(*.largest_safe_t, .method)
)]
pub struct RangeViolation {
    /// The model.
    pub model: String,
    /// The first layer (full name, or `<block>.add`, or `input`) whose bound reaches the limit.
    pub layer: String,
    /// Its kind.
    pub kind: String,
    /// The largest ring value it can reach (pre-truncation value or stored output).
    pub bound: f64,
    /// The limit, 2^62.
    pub limit: f64,
    /// The session's fractional bits.
    pub frac_bits: u32,
    /// The largest `t` at which every layer is within the limit, `None` when none is.
    pub largest_safe_t: Option<u32>,
    /// How the bound was obtained (interval bound or calibration), in words.
    pub method: String,
}

/// What [`Error::FailureProbability`] reports: the predicted failure probability of a run, the allowed one, and
/// the layers responsible. Under probabilistic truncation every truncation can fail; in the exact mode only the
/// divisions by a public non-power of two (3×3 or 7×7 average pooling), which are probabilistic in every mode.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRisk {
    /// The model.
    pub model: String,
    /// Predicted failure probability of the run (an upper bound).
    pub probability: f64,
    /// The allowed probability.
    pub threshold: f64,
    /// The session's fractional bits.
    pub frac_bits: u32,
    /// Samples in the run.
    pub batch: usize,
    /// The session's truncation mode.
    pub truncation: crate::protocols::TruncationMode,
    /// The layer contributing most.
    pub layer: String,
    /// Every layer that can fail in this mode, largest share first.
    pub sources: Vec<FailureSource>,
    /// How the magnitudes were obtained, in words.
    pub method: String,
}

/// One layer's share of a [`FailureRisk`].
#[derive(Debug, Clone, PartialEq)]
pub struct FailureSource {
    /// Full layer name.
    pub layer: String,
    /// Layer kind (`Conv2d`, `AvgPool2d`, `GlobalAvgPool`, …).
    pub kind: String,
    /// The public divisor of a division by a non-power of two (probabilistic in every truncation mode); `None`
    /// for a truncation that is probabilistic only under probabilistic truncation.
    pub divisor: Option<u64>,
    /// Its predicted failure probability over the run.
    pub probability: f64,
}

impl std::fmt::Display for FailureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind.as_str() {
            "AvgPool2d" => "average pooling",
            "GlobalAvgPool" => "global average pooling",
            kind => kind,
        };
        match self.divisor {
            Some(d) => write!(f, "{what} `{}` divides by {d} ({:.1e})", self.layer, self.probability),
            None => write!(f, "{what} `{}` ({:.1e})", self.layer, self.probability),
        }
    }
}

impl std::fmt::Display for FailureRisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (model, t, p, batch) = (&self.model, self.frac_bits, self.probability, self.batch);
        let divisions: Vec<String> =
            self.sources.iter().filter(|s| s.divisor.is_some()).map(ToString::to_string).collect();
        // The probability rounded up to one significant digit: a threshold that admits this run.
        let step = 10f64.powf(p.log10().floor());
        let admits = if p > 0.0 && step.is_finite() { (p / step).ceil() * step } else { p };
        let accept = format!("accept the risk with Executor::allow_truncation_failures({admits:.0e}) or more");
        match self.truncation {
            crate::protocols::TruncationMode::Exact => write!(
                f,
                "model `{model}`: at t = {t} in the exact truncation mode, a run of {batch} sample(s) is predicted to \
                 fail with probability up to {p:.2e} ({method}; union bound over every divided element), above the \
                 allowed {threshold:.1e}: {list}, which {is} probabilistic even in exact mode (exact truncation \
                 covers divisions by powers of two only); {accept}, use a smaller t (each bit less halves it), or \
                 pooling windows whose area is a power of two",
                is = if divisions.len() > 1 { "are" } else { "is" },
                method = self.method,
                threshold = self.threshold,
                list = divisions.join(", "),
            ),
            crate::protocols::TruncationMode::Probabilistic => {
                write!(
                    f,
                    "model `{model}`: probabilistic truncation at t = {t} is predicted to fail with probability up to \
                     {p:.2e} per run of {batch} sample(s) (union bound over every truncated element, largest share \
                     from layer `{layer}`; {method}), above the allowed {threshold:.1e}; use the exact truncation mode \
                     (the default), a smaller t, or {accept}",
                    layer = self.layer,
                    method = self.method,
                    threshold = self.threshold,
                )?;
                if !divisions.is_empty() {
                    write!(f, " (in the exact mode these stay probabilistic: {})", divisions.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FailureRisk {}

fn range_advice(largest_safe_t: Option<u32>, method: &str) -> String {
    let t = match largest_safe_t {
        Some(t) => format!("the largest safe t is {t} (Config::frac_bits)"),
        None => "no t is safe".to_string(),
    };
    if method.starts_with("interval") {
        format!(
            "{t}; declare a tighter input bound (Executor::with_input_bound), or, where worst-case intervals are far \
             looser than real values (deep networks; compare with `cryptgpu precision --calibrate N`), check calibrated \
             magnitudes instead (Executor::with_range_check(RangeCheck::Calibrated {{ .. }}), not a guarantee)"
        )
    } else {
        format!("{t}; calibrated magnitudes are not a guarantee, and these already exceed the limit")
    }
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
