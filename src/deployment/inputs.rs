//! The owners' files: the model owner's weights (or a seeded Kaiming initialisation), the data owner's inference
//! inputs (an MNIST-format directory or a `.npy` array) and training set. Each is read only by its owner.

use super::DeployError;
use crate::data::{Dataset, Split};
use cryptgpu_dsl::{weights, Graph, Params, Tensor as DslTensor};
use cryptgpu_runtime::PartyId;
use rand::SeedableRng;
use std::path::Path;

/// The model owner's parameters: `weights` if given, else Kaiming weights from `init_seed` (default 1).
pub fn model_params(graph: &Graph, weights_file: Option<&Path>, init_seed: Option<u64>) -> Result<Params, DeployError> {
    match weights_file {
        Some(path) => Ok(weights::load(graph, path)?),
        None => Ok(Params::kaiming(graph, &mut rand::rngs::StdRng::seed_from_u64(init_seed.unwrap_or(1)))),
    }
}

fn input_err(party: PartyId, path: &Path, problem: impl Into<String>) -> DeployError {
    DeployError::Input { party, path: path.to_path_buf(), problem: problem.into() }
}

/// Checks that a dataset's images have the model's input shape.
fn check_image_shape(party: PartyId, dir: &Path, graph: &Graph, set: &Dataset) -> Result<(), DeployError> {
    let image = &set.images.shape[1..];
    if image != graph.input_shape() {
        return Err(input_err(
            party,
            dir,
            format!(
                "holds images of shape {image:?}, but model `{}` takes inputs {:?}",
                graph.name(),
                graph.input_shape()
            ),
        ));
    }
    Ok(())
}

/// The data owner's inference inputs `[N, …input]`: the first `images` test images of the dataset in directory
/// `data`, or the first `images` rows of the `.npy` file `data`.
pub fn inference_inputs(
    party: PartyId,
    graph: &Graph,
    data: &Path,
    source: crate::data::Source,
    images: usize,
) -> Result<DslTensor, DeployError> {
    if data.extension().is_some_and(|e| e == "npy") {
        return read_npy(party, graph, data, images);
    }
    let set = Dataset::load(source, data, Split::Test)?;
    check_image_shape(party, data, graph, &set)?;
    if images > set.len() {
        return Err(input_err(party, data, format!("job.images is {images}, the test set has {}", set.len())));
    }
    let b = set.subset(0..images);
    let batch = b.batches(images).next().ok_or_else(|| input_err(party, data, "holds no test images"))?;
    Ok(DslTensor::from_vec(&batch.shape, batch.images.to_vec())?)
}

/// Reads a `.npy` array of f32 or f64, C order, shape `[N, …model input]` ([`crate::tensor_files::read_npy`]), and
/// keeps its first `rows` rows.
fn read_npy(party: PartyId, graph: &Graph, path: &Path, rows: usize) -> Result<DslTensor, DeployError> {
    let bad = |problem: String| input_err(party, path, problem);
    let t = crate::tensor_files::read_npy(path).map_err(|e| bad(e.problem()))?;
    let shape = t.shape().to_vec();
    let mut want = vec![shape.first().copied().unwrap_or(0)];
    want.extend_from_slice(graph.input_shape());
    if shape.len() != want.len() || shape[1..] != want[1..] || shape[0] == 0 {
        return Err(bad(format!(
            "has shape {shape:?}; model `{}` takes [N, {}] with N ≥ 1",
            graph.name(),
            graph.input_shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    if rows > shape[0] {
        return Err(bad(format!("job.images is {rows}, the file has {} rows", shape[0])));
    }
    let per_row = t.len() / shape[0];
    let mut out_shape = shape;
    out_shape[0] = rows;
    Ok(DslTensor::from_vec(&out_shape, t.data()[..rows * per_row].to_vec())?)
}

/// The data owner's training set: the train split of `source` in `dir`, shuffled with `seed`, checked against the
/// model's input shape, with at least one full batch.
pub fn training_set(
    party: PartyId,
    graph: &Graph,
    source: crate::data::Source,
    dir: &Path,
    seed: u64,
    batch: usize,
) -> Result<Dataset, DeployError> {
    let set = Dataset::load(source, dir, Split::Train)?;
    check_image_shape(party, dir, graph, &set)?;
    if set.len() < batch {
        return Err(input_err(
            party,
            dir,
            format!("holds {} training images, fewer than job.batch {batch}", set.len()),
        ));
    }
    Ok(set.shuffled(seed))
}

/// Batch `step` (0-based) of an epoch-cycling walk through `set`: full batches in order, the short tail dropped.
pub fn batch_of(set: &Dataset, step: usize, batch: usize) -> Result<(DslTensor, Vec<usize>), DeployError> {
    let per_epoch = set.len() / batch;
    let start = (step % per_epoch) * batch;
    let b = set.subset(start..start + batch);
    let b = b.batches(batch).next().expect("a full batch");
    Ok((DslTensor::from_vec(&b.shape, b.images.to_vec())?, b.labels_usize()))
}
