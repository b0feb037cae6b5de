//! Backends execute IR kernels on a party's device. Protocol code launches kernels only through this trait, so the
//! same stage plan runs on every backend.

pub mod counting;
pub mod cpu;
pub mod cuda;
pub mod observed;
pub mod recording;

use crate::buffer::Buffer;
use crate::prg::Stream;
use crate::{PartyId, Result};
use cryptgpu_codegen::{BitKernel, Error as KernelError, GatherKernel, GemmKernel, Kernel, MapKernel};

/// Proof that a launch passed its checks against the kernel's declaration ([`check_map`], [`check_gemm`],
/// [`check_gather`], [`check_bits`]): the `run_*` methods of a [`Backend`] take one, so a backend runs only
/// checked launches and never re-checks them (a wrapper such as the recording backend passes it on).
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    elements: usize,
}

impl Checked {
    /// The launch's element count (a map's `n`, a GEMM's `m·n`, a gather's or bit transpose's output length).
    pub fn elements(self) -> usize {
        self.elements
    }
}

/// Where an input of [`Backend::map_updating`] comes from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// A buffer.
    Buf(&'a Buffer),
    /// Words `range` of a buffer (where the buffer is: a slice on the host, an offset on a device).
    Range(&'a Buffer, std::ops::Range<usize>),
    /// Output `j` as it was before the launch: the map updates that buffer in place, element `e` read before element
    /// `e` is written (an element-indexed load only).
    Prior(usize),
}

impl Source<'_> {
    /// The words of a buffer or range input on the host (`None` for a prior output).
    pub fn host(&self) -> Result<Option<&[u64]>> {
        match self {
            Source::Buf(b) => b.host().map(Some),
            Source::Range(b, r) => Ok(Some(&b.host()?[r.clone()])),
            Source::Prior(_) => Ok(None),
        }
    }
}

/// Executes kernels on [`Buffer`]s (host vectors on the CPU backend, device memory on a device backend: see
/// [`crate::buffer`]). The checked entry points (`map`, `gemm`, `gather`, `bits`) are provided: they check the launch
/// against the kernel's declaration once, here, and hand the proof to the backend's `run_*`.
pub trait Backend: Send + Sync {
    /// Short name for logs ("cpu").
    fn name(&self) -> &'static str;

    /// A buffer of `n` zero words for a kernel to write, in this backend's memory; `None` (the default, host
    /// backends): the caller provides a host vector.
    fn output(&self, n: usize) -> Result<Option<Buffer>> {
        let _ = n;
        Ok(None)
    }

    /// Whether a launch returns before its kernel has run (a device backend queues kernels on a stream; the default:
    /// no, the host backends run it on the spot). Stage plans then queue kernels that do not depend on a round before
    /// it, so that they run while the round's messages are copied to the host and sent.
    fn queues_launches(&self) -> bool {
        false
    }

    /// Public constants of a protocol (a table of a few words, the same at every party) as a buffer in this
    /// backend's memory: a device backend uploads them, counted apart from shares ([`counting::Traffic`]); a host
    /// backend (the default) just holds them.
    fn constant(&self, words: &[u64]) -> Result<Buffer> {
        Ok(Buffer::from(words))
    }

    /// Make sure `b` has a copy in this backend's memory (a received message goes to the device as it arrives,
    /// once); nothing on a host backend (the default).
    fn adopt(&self, b: &Buffer) -> Result<()> {
        let _ = b;
        Ok(())
    }

    /// The backend party `id` of an in-process session uses, when it is not this one (a device backend gives each
    /// party its own streams); `None` (the default): this one, shared.
    fn for_party(&self, id: PartyId) -> Result<Option<std::sync::Arc<dyn Backend>>> {
        let _ = id;
        Ok(None)
    }

    /// Run a checked map: each output and each input has `checked.elements()` elements.
    fn run_map(
        &self,
        checked: Checked,
        k: &MapKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()>;

    /// Run a checked map whose inputs may be its own outputs' prior contents ([`Source::Prior`]). The default
    /// copies those outputs, then runs [`Backend::run_map`]; a backend that can update in place overrides it.
    fn run_map_updating(
        &self,
        checked: Checked,
        k: &MapKernel,
        inputs: &[Source<'_>],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        let copies: Vec<Buffer> = inputs
            .iter()
            .map(|s| match s {
                Source::Prior(j) => outputs[*j].clone(),
                Source::Range(b, r) => Buffer::from(&b[r.clone()]),
                Source::Buf(_) => Buffer::default(),
            })
            .collect();
        let ins: Vec<&Buffer> = inputs
            .iter()
            .zip(&copies)
            .map(|(s, c)| match s {
                Source::Buf(b) => *b,
                Source::Prior(_) | Source::Range(..) => c,
            })
            .collect();
        self.run_map(checked, k, &ins, params, streams, outputs)
    }

    /// Run a checked GEMM: `inputs` are the A blocks, the B blocks, then the epilogue's inputs.
    fn run_gemm(
        &self,
        checked: Checked,
        k: &GemmKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()>;

    /// Run a checked gather.
    fn run_gather(&self, checked: Checked, k: &GatherKernel, input: &Buffer, output: &mut Buffer) -> Result<()>;

    /// Run a checked bit transpose.
    fn run_bits(&self, checked: Checked, k: &BitKernel, input: &Buffer, output: &mut Buffer) -> Result<()>;

    /// Check, then run a map over `n` elements: each output and each input has `n` elements.
    fn map(
        &self,
        k: &MapKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        let lens: Vec<usize> = inputs.iter().map(|b| b.len()).collect();
        let checked = check_map_lens(k, &lens, params, streams, outputs)?;
        self.run_map(checked, k, inputs, params, streams, outputs)
    }

    /// Check, then run a map that updates its outputs in place: inputs are buffers or outputs' prior contents
    /// ([`Source`]); each output and each buffer input has `n` elements.
    fn map_updating(
        &self,
        k: &MapKernel,
        inputs: &[Source<'_>],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        let checked = {
            let mut lens: Vec<usize> = Vec::with_capacity(inputs.len());
            for (i, s) in inputs.iter().enumerate() {
                lens.push(match s {
                    Source::Buf(b) => b.len(),
                    Source::Range(b, r) if r.start <= r.end && r.end <= b.len() => r.len(),
                    Source::Range(b, r) => {
                        return Err(launch_error(
                            &k.name,
                            format!("input {i} a range within its buffer of {} words", b.len()),
                            format!("{r:?}"),
                        ))
                    }
                    Source::Prior(j) => {
                        let packed = k.insts.iter().any(|op| {
                            matches!(*op, cryptgpu_codegen::Op::Input { buf, load } if buf as usize == i
                                && load != cryptgpu_codegen::Load::Elem)
                        });
                        match outputs.get(*j) {
                            Some(o) if !packed => o.len(),
                            _ => {
                                return Err(launch_error(
                                    &k.name,
                                    format!("input {i} as the prior contents of one of {} outputs", outputs.len()),
                                    format!("output {j}{}", if packed { ", read packed" } else { "" }),
                                ))
                            }
                        }
                    }
                });
            }
            check_map_lens(k, &lens, params, streams, outputs)?
        };
        self.run_map_updating(checked, k, inputs, params, streams, outputs)
    }

    /// Check, then run a GEMM: `inputs` are the A blocks, the B blocks, then the epilogue's inputs; each output has
    /// `m·n` elements.
    fn gemm(
        &self,
        k: &GemmKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        let checked = check_gemm(k, inputs, params, streams, outputs)?;
        self.run_gemm(checked, k, inputs, params, streams, outputs)
    }

    /// Check, then run a gather.
    fn gather(&self, k: &GatherKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        let checked = check_gather(k, input, output)?;
        self.run_gather(checked, k, input, output)
    }

    /// Check, then run a bit transpose.
    fn bits(&self, k: &BitKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        let checked = check_bits(k, input, output)?;
        self.run_bits(checked, k, input, output)
    }
}

/// Launch any kernel on `backend` (gathers and bit transposes take `inputs[0]` and `outputs[0]`).
pub fn launch(
    backend: &dyn Backend,
    kernel: &Kernel,
    inputs: &[&Buffer],
    params: &[u64],
    streams: &[Stream],
    outputs: &mut [&mut Buffer],
) -> Result<()> {
    let (n_in, n_out) = (inputs.len(), outputs.len());
    let unary = |what: &str| {
        launch_error(kernel.name(), format!("one input and one output for a {what}"), format!("{n_in} and {n_out}"))
    };
    match kernel {
        Kernel::Map(k) => backend.map(k, inputs, params, streams, outputs),
        Kernel::Gemm(k) => backend.gemm(k, inputs, params, streams, outputs),
        Kernel::Gather(k) => match (inputs, outputs) {
            ([input], [output]) => backend.gather(k, input, output),
            _ => Err(unary("gather")),
        },
        Kernel::Bits(k) => match (inputs, outputs) {
            ([input], [output]) => backend.bits(k, input, output),
            _ => Err(unary("bit transpose")),
        },
    }
}

fn launch_error(kernel: &str, expected: String, found: String) -> crate::Error {
    KernelError::Launch { kernel: kernel.into(), expected, found }.into()
}

/// Check a map launch: declaration counts and equal buffer lengths.
pub fn check_map(
    k: &MapKernel,
    inputs: &[&Buffer],
    params: &[u64],
    streams: &[Stream],
    outputs: &[&mut Buffer],
) -> Result<Checked> {
    let lens: Vec<usize> = inputs.iter().map(|b| b.len()).collect();
    check_map_lens(k, &lens, params, streams, outputs)
}

/// [`check_map`] on the inputs' lengths.
fn check_map_lens(
    k: &MapKernel,
    inputs: &[usize],
    params: &[u64],
    streams: &[Stream],
    outputs: &[&mut Buffer],
) -> Result<Checked> {
    k.validate(false)?;
    check_counts(k, inputs.len(), params, streams, outputs.len())?;
    let n = outputs.first().map_or(0, |o| o.len());
    if let Some(o) = outputs.iter().find(|o| o.len() != n) {
        return Err(launch_error(&k.name, format!("every output with {n} elements"), format!("{}", o.len())));
    }
    for (i, &len) in inputs.iter().enumerate() {
        let want = k.input_len(i as u16, n).unwrap_or(n);
        if len != want {
            return Err(launch_error(&k.name, format!("input {i} with {want} elements"), format!("{len}")));
        }
    }
    Ok(Checked { elements: n })
}

/// Check a GEMM launch against its shape.
pub fn check_gemm(
    k: &GemmKernel,
    inputs: &[&Buffer],
    params: &[u64],
    streams: &[Stream],
    outputs: &[&mut Buffer],
) -> Result<Checked> {
    k.validate()?;
    let blocks = 2 * k.k_blocks.len();
    if inputs.len() < blocks {
        return Err(launch_error(&k.name, format!("{blocks} A/B blocks"), format!("{} inputs", inputs.len())));
    }
    check_counts(&k.epilogue, inputs.len() - blocks, params, streams, outputs.len())?;
    for (i, (want, buf)) in k.input_lens().iter().zip(inputs).enumerate() {
        if let Some(w) = want {
            if *w != buf.len() {
                return Err(launch_error(&k.name, format!("input {i} with {w} elements"), format!("{}", buf.len())));
            }
        }
    }
    if let Some(o) = outputs.iter().find(|o| o.len() != k.m * k.n) {
        return Err(launch_error(&k.name, format!("outputs with {} elements", k.m * k.n), format!("{}", o.len())));
    }
    Ok(Checked { elements: k.m * k.n })
}

/// Check a gather launch.
pub fn check_gather(k: &GatherKernel, input: &Buffer, output: &Buffer) -> Result<Checked> {
    k.validate()?;
    if input.len() != k.in_len() || output.len() != k.out_len() {
        return Err(launch_error(
            &k.name,
            format!("input of {} and output of {} elements", k.in_len(), k.out_len()),
            format!("{} and {}", input.len(), output.len()),
        ));
    }
    Ok(Checked { elements: output.len() })
}

/// Check a bit-transpose launch.
pub fn check_bits(k: &BitKernel, input: &Buffer, output: &Buffer) -> Result<Checked> {
    k.validate()?;
    if input.len() != k.in_len() || output.len() != k.out_len() {
        return Err(launch_error(
            &k.name,
            format!("input of {} and output of {} words", k.in_len(), k.out_len()),
            format!("{} and {}", input.len(), output.len()),
        ));
    }
    Ok(Checked { elements: output.len() })
}

fn check_counts(k: &MapKernel, inputs: usize, params: &[u64], streams: &[Stream], outputs: usize) -> Result<()> {
    let want = (k.inputs as usize, k.params as usize, k.prg_streams as usize, k.outputs.len());
    let got = (inputs, params.len(), streams.len(), outputs);
    if want != got {
        return Err(launch_error(
            &k.name,
            format!("(inputs, params, streams, outputs) = {want:?}"),
            format!("{got:?}"),
        ));
    }
    Ok(())
}
