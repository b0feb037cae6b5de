//! The switch for cross-layer fusion in the lowering ([`Fusion`]); what is fused is described in the
//! [model layer's docs](super).

/// Whether the lowering fuses across layers: on by default; [`Fusion::Off`] runs every layer on its own (to compare
/// rounds, bytes and results).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fusion {
    /// Fuse where exact (the default).
    #[default]
    On,
    /// One layer after another, as without the fusion pass.
    Off,
}

impl Fusion {
    /// `On` when `on`.
    pub fn from_bool(on: bool) -> Fusion {
        if on {
            Fusion::On
        } else {
            Fusion::Off
        }
    }

    /// Whether fusion is on.
    pub fn is_on(self) -> bool {
        self == Fusion::On
    }
}
