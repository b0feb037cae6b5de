//! The three roles of a private computation.

use crate::PartyId;

/// Who plays which part in a private inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The party that knows the parameters.
    pub model_owner: PartyId,
    /// The party that knows the input batch.
    pub data_owner: PartyId,
    /// The only party that learns the logits.
    pub receiver: PartyId,
}

impl Default for Roles {
    /// Party 0 owns the model, party 1 the data, and party 1 receives the result.
    fn default() -> Self {
        Roles { model_owner: 0, data_owner: 1, receiver: 1 }
    }
}
