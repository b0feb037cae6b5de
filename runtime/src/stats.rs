//! Communication accounting: rounds, bytes and messages, per party.

use std::ops::{Add, Sub};

/// What one party spent on communication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Communication rounds (sequential exchanges) the party took part in.
    pub rounds: u64,
    /// Bytes the party sent.
    pub bytes_sent: u64,
    /// Messages the party sent.
    pub messages: u64,
    /// Bytes the party received.
    pub bytes_received: u64,
}

impl Add for Stats {
    type Output = Stats;
    fn add(self, o: Stats) -> Stats {
        Stats {
            rounds: self.rounds + o.rounds,
            bytes_sent: self.bytes_sent + o.bytes_sent,
            messages: self.messages + o.messages,
            bytes_received: self.bytes_received + o.bytes_received,
        }
    }
}

impl Sub for Stats {
    type Output = Stats;
    fn sub(self, o: Stats) -> Stats {
        Stats {
            rounds: self.rounds - o.rounds,
            bytes_sent: self.bytes_sent - o.bytes_sent,
            messages: self.messages - o.messages,
            bytes_received: self.bytes_received - o.bytes_received,
        }
    }
}

/// Stats of all three parties for one protocol call or run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartyStats(pub [Stats; 3]);

impl PartyStats {
    /// Rounds: the largest count of any party (they agree for every protocol here).
    pub fn rounds(&self) -> u64 {
        self.0.iter().map(|s| s.rounds).max().unwrap_or(0)
    }
    /// Bytes sent by all parties together.
    pub fn total_bytes(&self) -> u64 {
        self.0.iter().map(|s| s.bytes_sent).sum()
    }
    /// Bytes each party sent, in party order.
    pub fn bytes(&self) -> [u64; 3] {
        [self.0[0].bytes_sent, self.0[1].bytes_sent, self.0[2].bytes_sent]
    }
}

impl Add for PartyStats {
    type Output = PartyStats;
    fn add(self, o: PartyStats) -> PartyStats {
        PartyStats([self.0[0] + o.0[0], self.0[1] + o.0[1], self.0[2] + o.0[2]])
    }
}

impl std::fmt::Display for PartyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.bytes();
        write!(
            f,
            "{} rounds, bytes sent P0/P1/P2 = {}/{}/{} ({:.3} MB total)",
            self.rounds(),
            b[0],
            b[1],
            b[2],
            self.total_bytes() as f64 / 1e6
        )
    }
}
