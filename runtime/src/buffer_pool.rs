//! Buffers a party has finished with, kept for its next kernel outputs.
//!
//! Every kernel writes each of its outputs whole, so an output buffer need not be zeroed, only large enough. A fresh
//! multi-megabyte allocation costs the kernel's work again: zeroing (`vec![0; n]`) and, from the system allocator,
//! page faults and TLB shootdowns when the pages go back to the OS. The protocols hand the buffers they no longer
//! need (a product's sent sum, the terms of a truncation, received messages) to [`BufferPool::give`]; kernel outputs
//! come from [`BufferPool::take`]. What a buffer held is overwritten before anyone reads it, and it never leaves the
//! party that holds it.
//!
//! Bounds: buffers under [`MIN_WORDS`] words are not kept (the allocator serves them well); at most [`MAX_BUFFERS`]
//! buffers and [`MAX_WORDS`] words (256 MiB) per pool, kept until the pool is dropped. Each party has one; the CPU
//! backend keeps one more, process-wide, for its GEMM accumulators.

use std::sync::Mutex;

/// Smallest buffer worth keeping (32 KiB).
pub const MIN_WORDS: usize = 1 << 12;
/// Most buffers kept per party.
pub const MAX_BUFFERS: usize = 16;
/// Most words kept per party (256 MiB).
pub const MAX_WORDS: usize = 1 << 25;

/// A party's free buffers.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u64>>>,
}

impl Default for BufferPool {
    fn default() -> BufferPool {
        BufferPool::new()
    }
}

impl BufferPool {
    /// An empty pool (`const`, so a process-wide pool can be a `static`).
    pub const fn new() -> BufferPool {
        BufferPool { free: Mutex::new(Vec::new()) }
    }

    /// A buffer of `n` words with unspecified contents: a kept one of capacity `n ..= 2n` (the smallest), else a
    /// fresh zeroed one.
    pub fn take(&self, n: usize) -> Vec<u64> {
        if n >= MIN_WORDS {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let best = (0..free.len())
                .filter(|&i| (n..=n.saturating_mul(2)).contains(&free[i].capacity()))
                .min_by_key(|&i| free[i].capacity());
            if let Some(i) = best {
                let mut v = free.swap_remove(i);
                v.resize(n, 0); // shortens, or zero-fills only the part past the old length
                return v;
            }
        }
        vec![0; n]
    }

    /// Make sure at least `count` buffers that [`BufferPool::take`]`(n)` would use are kept, allocating the missing
    /// ones now (so that their zeroing and page faults happen here, not in the step that needs them).
    pub fn reserve(&self, count: usize, n: usize) {
        if n < MIN_WORDS {
            return;
        }
        let have = {
            let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.iter().filter(|v| (n..=n.saturating_mul(2)).contains(&v.capacity())).count()
        };
        for _ in have..count {
            self.give(vec![0; n]);
        }
    }

    /// Keep `v` for a later [`BufferPool::take`] (or drop it: too small, or the pool is full).
    pub fn give(&self, v: Vec<u64>) {
        if v.capacity() < MIN_WORDS {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let kept: usize = free.iter().map(Vec::capacity).sum();
        if free.len() < MAX_BUFFERS && kept + v.capacity() <= MAX_WORDS {
            free.push(v);
        }
    }

    /// Buffers and words kept now.
    pub fn kept(&self) -> (usize, usize) {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        (free.len(), free.iter().map(Vec::capacity).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_smallest_fitting_buffer_and_respects_the_bounds() {
        let pool = BufferPool::default();
        pool.give(vec![1; 100]); // too small to keep
        assert_eq!(pool.kept(), (0, 0));
        pool.give(vec![7; 3 * MIN_WORDS]);
        pool.give(vec![7; 5 * MIN_WORDS]);
        let v = pool.take(2 * MIN_WORDS); // 3·MIN fits (≤ 2n), 5·MIN does not
        assert_eq!((v.len(), v.capacity()), (2 * MIN_WORDS, 3 * MIN_WORDS));
        assert_eq!(pool.kept(), (1, 5 * MIN_WORDS));
        let w = pool.take(MIN_WORDS); // nothing within 2n: fresh and zeroed
        assert!(w.iter().all(|&x| x == 0) && w.capacity() < 3 * MIN_WORDS);
        for _ in 0..2 * MAX_BUFFERS {
            pool.give(vec![0; MIN_WORDS]);
        }
        assert_eq!(pool.kept().0, MAX_BUFFERS);
        let r = BufferPool::default();
        r.give(vec![1; 2 * MIN_WORDS]);
        r.reserve(3, 2 * MIN_WORDS); // one kept already: two more allocated
        assert_eq!(r.kept(), (3, 6 * MIN_WORDS));
        r.reserve(2, 2 * MIN_WORDS); // enough already
        assert_eq!(r.kept().0, 3);
        r.reserve(4, 10); // too small to keep: nothing
        assert_eq!(r.kept().0, 3);
        let big = BufferPool::default();
        big.give(vec![0; MAX_WORDS]);
        big.give(vec![0; MIN_WORDS]);
        assert_eq!(big.kept(), (1, MAX_WORDS));
    }
}
