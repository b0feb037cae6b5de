//! Errors raised while building or validating kernels.

/// A kernel description that cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The kernel refers to something it does not declare, or is malformed.
    #[error("kernel `{kernel}` is invalid: {reason}")]
    Invalid {
        /// Kernel name.
        kernel: String,
        /// What is wrong.
        reason: String,
    },
    /// Launch arguments do not match the kernel's declaration.
    #[error("kernel `{kernel}` launched with bad arguments: expected {expected}, found {found}")]
    Launch {
        /// Kernel name.
        kernel: String,
        /// What the kernel declares.
        expected: String,
        /// What the launch supplied.
        found: String,
    },
}
