//! Buffers that live where the backend computes: [`Buffer`] holds a tensor piece's words on the host, in a
//! backend's device memory ([`DeviceMemory`]), or both (two copies known to be equal).
//!
//! Protocols hold `Buffer`s and hand them to the backend's kernels; on the CPU backend every buffer is a host vector
//! and nothing else happens. A device backend runs a kernel on the device copies of its inputs, uploading a
//! host-only input once (the device copy is then kept with the buffer, so a weight used by every inference is
//! uploaded once), and writes its outputs to device memory only. A buffer's words reach the host only when someone
//! reads them there: the transport sending a message ([`Buffer::host`]), a reveal, a protocol step that computes on
//! the host. Each such read is a download, counted by the device memory that serves it (see
//! [`crate::backend::counting`], which asserts that the protocols download nothing but their messages and
//! results).
//!
//! Reading through `Deref` (`&buf[..]`, `buf.iter()`) downloads the same way; as `Deref` cannot fail, a failing
//! download there (the device was lost) panics with the device's error. Code that must report it calls
//! [`Buffer::host`]. Writing through `DerefMut` makes the host copy the only one (the device copy is dropped).

use crate::{Error, Result};
use std::any::Any;
use std::ops::Range;
use std::sync::OnceLock;

/// A buffer in a device backend's memory. Implemented by each device backend (and the counting backend's simulated
/// device); the backend that made it recognises it with [`DeviceMemory::as_any`].
pub trait DeviceMemory: Send + Sync + Any {
    /// Words held.
    fn len(&self) -> usize;
    /// Whether it holds no word.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy the words to the host (a download).
    fn download(&self) -> Result<Vec<u64>>;
    /// A second device buffer with the same words (a copy on the device, no transfer).
    fn duplicate(&self) -> Result<Box<dyn DeviceMemory>>;
    /// A new buffer on the same device holding the words `parts` name, one after the other (each part's device
    /// memory copied on the device; a host-only part uploaded). [`assemble`] checks the ranges first.
    fn assemble(&self, parts: &[(&Buffer, Range<usize>)]) -> Result<Box<dyn DeviceMemory>>;
    /// For the backend to recognise its own memory.
    fn as_any(&self) -> &dyn Any;
    /// For the backend to write its own memory.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A tensor piece's words: on the host, on a device, or both (see the [module documentation](self)).
#[derive(Default)]
pub struct Buffer {
    host: OnceLock<Vec<u64>>,
    device: OnceLock<Box<dyn DeviceMemory>>,
}

impl Buffer {
    /// A host buffer.
    pub fn from_host(words: Vec<u64>) -> Buffer {
        Buffer { host: OnceLock::from(words), device: OnceLock::new() }
    }

    /// A buffer whose only copy is on a device.
    pub fn from_device(memory: Box<dyn DeviceMemory>) -> Buffer {
        Buffer { host: OnceLock::new(), device: OnceLock::from(memory) }
    }

    /// Words held.
    pub fn len(&self) -> usize {
        match (self.host.get(), self.device.get()) {
            (Some(h), _) => h.len(),
            (None, Some(d)) => d.len(),
            (None, None) => 0,
        }
    }

    /// Whether it holds no word.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the words are on the host (no download needed to read them there).
    pub fn on_host(&self) -> bool {
        self.host.get().is_some() || self.device.get().is_none()
    }

    /// The device copy, if there is one.
    pub fn device(&self) -> Option<&dyn DeviceMemory> {
        self.device.get().map(|d| &**d)
    }

    /// The device copy, made with `upload` from the host copy if there is none yet (and kept with the buffer).
    pub fn device_or_upload(
        &self,
        upload: impl FnOnce(&[u64]) -> Result<Box<dyn DeviceMemory>>,
    ) -> Result<&dyn DeviceMemory> {
        if let Some(d) = self.device.get() {
            return Ok(&**d);
        }
        let made = upload(self.host.get().map_or(&[][..], Vec::as_slice))?;
        if made.len() != self.len() {
            return Err(Error::Internal(format!("an upload of {} words made {}", self.len(), made.len())));
        }
        // A buffer is used by one party's thread at a time; should another thread have set it meanwhile, its
        // copy (of the same words) is kept.
        let _ = self.device.set(made);
        Ok(&**self.device.get().expect("set above"))
    }

    /// The device copy to write: the host copy is dropped (the device's words become the only ones). `None` when
    /// there is no device copy.
    pub fn device_mut(&mut self) -> Option<&mut dyn DeviceMemory> {
        if self.device.get().is_some() {
            self.host.take();
        }
        self.device.get_mut().map(|d| &mut **d)
    }

    /// Replace the contents by device memory (the host copy is dropped).
    pub fn set_device(&mut self, memory: Box<dyn DeviceMemory>) {
        self.host.take();
        self.device = OnceLock::from(memory);
    }

    /// The words on the host, downloading them (once; the host copy is then kept) if they are only on a device.
    pub fn host(&self) -> Result<&[u64]> {
        if let Some(h) = self.host.get() {
            return Ok(h);
        }
        let words = match self.device.get() {
            Some(d) => d.download()?,
            None => Vec::new(),
        };
        let _ = self.host.set(words);
        Ok(self.host.get().expect("set above"))
    }

    /// The words as a host vector (downloaded if they are only on a device).
    pub fn into_host(mut self) -> Result<Vec<u64>> {
        self.host()?;
        Ok(self.host.take().unwrap_or_default())
    }

    /// The host vector when the words are on the host alone (so the pool can reuse it); `None` for device memory.
    pub(crate) fn into_host_only(mut self) -> Option<Vec<u64>> {
        match self.device.get() {
            None => self.host.take(),
            Some(_) => None,
        }
    }
}

impl From<Vec<u64>> for Buffer {
    fn from(words: Vec<u64>) -> Buffer {
        Buffer::from_host(words)
    }
}

impl From<&[u64]> for Buffer {
    fn from(words: &[u64]) -> Buffer {
        Buffer::from_host(words.to_vec())
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        self.host().unwrap_or_else(|e| panic!("reading a device buffer on the host: {e}"))
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u64] {
        if self.host.get().is_none() {
            let _ = self.host();
        }
        self.device.take();
        self.host.get_mut().map_or(&mut [][..], Vec::as_mut_slice)
    }
}

impl Clone for Buffer {
    /// A copy of each copy there is: the host vector, and the device memory copied on the device (no transfer).
    /// Should the device copy fail (the device was lost), a host-only buffer (downloading if need be; a failing
    /// download panics, as reading through `Deref` does).
    fn clone(&self) -> Buffer {
        let device = self.device.get().map(|d| d.duplicate());
        match (self.host.get(), device) {
            (h, Some(Ok(d))) => {
                Buffer { host: h.cloned().map_or_else(OnceLock::new, OnceLock::from), device: OnceLock::from(d) }
            }
            (Some(h), None) => Buffer::from_host(h.clone()),
            (_, Some(Err(_))) => Buffer::from_host(self.to_vec()),
            (None, None) => Buffer::default(),
        }
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Buffer) -> bool {
        **self == **other
    }
}

impl Eq for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match (self.host.get(), self.device.get()) {
            (Some(_), Some(_)) => "host+device",
            (None, Some(_)) => "device",
            _ => "host",
        };
        write!(f, "Buffer({} words, {place})", self.len())
    }
}

impl FromIterator<u64> for Buffer {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Buffer {
        Buffer::from_host(iter.into_iter().collect())
    }
}

/// The error of a backend handed device memory that is not its own (`backend` names it).
pub(crate) fn foreign(len: usize, backend: &str) -> Error {
    Error::Internal(format!("a buffer of {len} words that is not in the {backend} backend's memory"))
}

/// A new buffer of the words `parts` name, one after the other: on the device of the first part that has device
/// memory (copied there, no transfer for parts already on it), else on the host. A range outside its buffer is an
/// error.
pub fn assemble(parts: &[(&Buffer, Range<usize>)]) -> Result<Buffer> {
    for (b, r) in parts {
        if r.start > r.end || r.end > b.len() {
            return Err(Error::Internal(format!("words {r:?} of a buffer of {} assembled", b.len())));
        }
    }
    if let Some(d) = parts.iter().find_map(|(b, _)| b.device()) {
        return Ok(Buffer::from_device(d.assemble(parts)?));
    }
    let mut words = Vec::with_capacity(parts.iter().map(|(_, r)| r.len()).sum());
    for (b, r) in parts {
        words.extend_from_slice(&b.host()?[r.clone()]);
    }
    Ok(Buffer::from_host(words))
}
