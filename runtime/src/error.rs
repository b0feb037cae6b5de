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
    /// A kernel failed validation or was launched with wrong arguments.
    #[error(transparent)]
    Kernel(#[from] cryptgpu_codegen::Error),
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
