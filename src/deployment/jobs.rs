//! Running one party's job: local preparation (each owner reads its own files, a training party checks its
//! checkpoint directory) before anyone connects, then the connection, key agreement and the job's per-party
//! program, then the result (written by the party that receives it).

use super::config::{Deployment, InferJob, Job, TrainJob, DEFAULT_CHECKPOINT_EVERY};
use super::link::{fault_exit, FaultPoint, Link, LinkHandle};
use super::{inputs, DeployError, RunOptions};
use cryptgpu_dsl::{weights, Graph};
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::executor::{Executor, Roles};
use cryptgpu_runtime::training::{TrainConfig, Trainer};
use cryptgpu_runtime::transport::tls::{connect_tls, TlsIdentity};
use cryptgpu_runtime::{Config, Party, PartyId};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Run party `id` of `d` on `graph` (see [`super::run_party`]).
pub fn run(graph: Graph, id: PartyId, d: &Deployment, options: &RunOptions) -> Result<String, DeployError> {
    if id > 2 {
        return Err(DeployError::Id(id));
    }
    if let Some(seed) = d.insecure_test_seed {
        eprintln!(
            "WARNING: {}: insecure_test_seed = {seed}: every PRF key of this run is derived from a seed written in \
             the config, so anyone who reads it learns every secret. INSECURE, for reproducible tests only.",
            d.file.display()
        );
    }
    let me = d.entry(id);
    let key = me.key.as_ref().ok_or_else(|| d.error(format!("party {id} has no `key` entry")))?;
    let identity = TlsIdentity::load(&me.cert, key)?;
    let roles = Roles { model_owner: d.roles.model_owner, data_owner: d.roles.data_owner, receiver: d.roles.receiver };
    match &d.job {
        Job::Infer(job) => infer(graph, id, d, roles, job, &identity, options),
        Job::Train(job) => train(graph, id, d, roles, job, &identity, options),
    }
}

/// Connect to the peers and agree the keys.
fn connect(
    id: PartyId,
    d: &Deployment,
    identity: &TlsIdentity,
    fault: Option<FaultPoint>,
) -> Result<(Party, LinkHandle, Arc<AtomicBool>), DeployError> {
    let abort = Arc::new(AtomicBool::new(false));
    let tls = connect_tls(id, identity, &d.peers()?)?.with_abort_flag(abort.clone());
    let (link, handle) = Link::new(tls, abort.clone());
    if fault == Some(FaultPoint::Keys) {
        handle.exit_after_sends(1); // one of the two key contributions sent, the other not
    }
    let config = Config { timeout: d.timeout(), insecure_test_seed: d.insecure_test_seed, ..Config::default() };
    match Party::connect(id, &config, Box::new(link), Arc::new(CpuBackend)) {
        Ok(party) => Ok((party, handle, abort)),
        Err(error) => {
            let error = blame(id, &handle, error);
            abort.store(true, Ordering::SeqCst);
            let _ = handle.finish(); // the peers stop at once instead of waiting for a key contribution
            handle.linger();
            Err(error)
        }
    }
}

/// This party's error, with the party that failed first when a peer's abort or end stopped this one.
fn blame(id: PartyId, handle: &LinkHandle, error: cryptgpu_runtime::Error) -> DeployError {
    match handle.culprit(id, &error) {
        Some((culprit, cause)) => DeployError::PeerFailed { error: Box::new(error), culprit, cause: Box::new(cause) },
        None => DeployError::Runtime(error),
    }
}

/// End this party's program: on failure find out which party failed first (when a peer's abort stopped this one),
/// then tell the peers (an abort frame on failure, an end frame otherwise).
fn finish<T>(
    party: &mut Party,
    handle: &LinkHandle,
    abort: &AtomicBool,
    result: Result<T, DeployError>,
) -> Result<T, DeployError> {
    let result = result.map_err(|e| match e {
        DeployError::Runtime(error) => blame(party.id(), handle, error),
        e => e,
    });
    if result.is_err() {
        abort.store(true, Ordering::SeqCst); // the end-of-program frame becomes an abort frame: the peers stop now
    }
    let finished = party.finish_program();
    if result.is_err() {
        handle.linger();
    }
    let value = result?;
    finished?;
    Ok(value)
}

/// The parent directory of an output file must exist before the run (the result is written after it).
fn check_output_dir(id: PartyId, path: &Path, what: &'static str) -> Result<(), DeployError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if dir.is_dir() {
        return Ok(());
    }
    Err(DeployError::Output {
        party: id,
        path: path.to_path_buf(),
        what,
        problem: "its directory does not exist".into(),
    })
}

/// Private inference: the model owner's weights, the data owner's inputs; the logits go to the receiver.
fn infer(
    graph: Graph,
    id: PartyId,
    d: &Deployment,
    roles: Roles,
    job: &InferJob,
    identity: &TlsIdentity,
    options: &RunOptions,
) -> Result<String, DeployError> {
    // Local work first: the owners read (only) their own files, so a missing file fails before anyone connects.
    let params = (id == roles.model_owner)
        .then(|| inputs::model_params(&graph, job.weights.as_deref(), job.init_seed))
        .transpose()?;
    let input = (id == roles.data_owner)
        .then(|| inputs::inference_inputs(id, &graph, &job.data, job.dataset.unwrap_or_default().source(), job.images))
        .transpose()?;
    if id == roles.receiver {
        check_output_dir(id, &job.output, "logits")?;
    }
    let mut executor = Executor::new(graph, roles)?;
    if let Some(check) = job.range_check {
        executor = executor.with_range_check(check.check());
    }
    if let Some(p) = job.max_failure {
        executor = executor.allow_truncation_failures(p);
    }
    let (mut party, handle, abort) = connect(id, d, identity, options.fault_exit_at)?;
    let result = executor.infer_party(&mut party, params.as_ref(), input.as_ref(), job.images).map_err(Into::into);
    let inference = finish(&mut party, &handle, &abort, result)?;
    let stats = party.total_stats();
    match inference.logits {
        Some(logits) => {
            let rows: Vec<Vec<f64>> = logits.data().chunks(logits.shape()[1]).map(|r| r.to_vec()).collect();
            let json = serde_json::to_string(&rows).expect("finite logits serialise");
            std::fs::write(&job.output, json).map_err(|e| DeployError::Output {
                party: id,
                path: job.output.clone(),
                what: "logits",
                problem: e.to_string(),
            })?;
            Ok(format!("party {id}: logits of {} inputs written to {}", rows.len(), job.output.display()))
        }
        None => Ok(format!("party {id}: done ({} rounds, {} bytes sent)", stats.rounds, stats.bytes_sent)),
    }
}

/// This party's checkpoint files in `dir` (`party{id}-step*.ckpt`, valid or not).
fn own_checkpoints(id: PartyId, dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("party{id}-step");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".ckpt")))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// The step a checkpoint file name carries.
fn step_of(path: &Path) -> Option<usize> {
    let name = path.file_name()?.to_str()?;
    name.split_once("-step")?.1.strip_suffix(".ckpt")?.parse().ok()
}

/// Private training: the model owner's initial model, the data owner's batches, checkpoints at every party; the
/// trained weights go to the model owner, each step's loss (`job.loss`) to the receiver.
fn train(
    graph: Graph,
    id: PartyId,
    d: &Deployment,
    roles: Roles,
    job: &TrainJob,
    identity: &TlsIdentity,
    options: &RunOptions,
) -> Result<String, DeployError> {
    let dir = d.checkpoint_dir(id).expect("checked in load: every party of a train job has one").to_path_buf();
    let every = job.checkpoint_every.unwrap_or(DEFAULT_CHECKPOINT_EVERY);
    // Local work first: the owners' files, the checkpoint directory.
    let init = (id == roles.model_owner)
        .then(|| inputs::model_params(&graph, job.weights.as_deref(), job.init_seed))
        .transpose()?;
    let source = job.dataset.unwrap_or_default().source();
    let set = (id == roles.data_owner)
        .then(|| {
            let data = job.data.clone().unwrap_or_else(|| source.default_dir().into());
            inputs::training_set(id, &graph, source, &data, job.shuffle_seed.unwrap_or(1), job.batch)
        })
        .transpose()?;
    if id == roles.model_owner {
        check_output_dir(id, &job.output, "trained weights")?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| DeployError::Checkpoints {
        party: id,
        dir: dir.clone(),
        problem: format!("cannot be created: {e}"),
    })?;
    let existing = own_checkpoints(id, &dir);
    if !options.resume && !existing.is_empty() {
        let names: Vec<String> = existing.iter().filter_map(|p| p.file_name()?.to_str().map(String::from)).collect();
        return Err(DeployError::Checkpoints {
            party: id,
            dir,
            problem: format!(
                "already holds this party's checkpoints ({}) of an earlier run: pass --resume to continue that run, \
                 or remove them (or choose another checkpoint_dir) to start over",
                names.join(", ")
            ),
        });
    }
    let mut config = TrainConfig::new(job.lr).with_momentum(job.momentum).with_weight_decay(job.weight_decay);
    if job.loss {
        config = config.with_loss_to(roles.receiver);
    }
    let trainer = Trainer::new(graph, roles, config)?;
    let fault = options.fault_exit_at;
    let (mut party, handle, abort) = connect(id, d, identity, fault)?;
    let p = &mut party;
    let result = (|| -> Result<_, DeployError> {
        let resumed = if options.resume { trainer.resume_party(p, &dir)? } else { None };
        let from = resumed.as_ref().map_or(0, |s| s.steps());
        set_aside_newer(id, &dir, from)?;
        let mut state = match resumed {
            Some(state) => state,
            None => trainer.share_params(p, init.as_ref())?,
        };
        if state.steps() > job.steps {
            return Err(DeployError::Checkpoints {
                party: id,
                dir: dir.clone(),
                problem: format!("the agreed checkpoint is at step {}, past job.steps = {}", state.steps(), job.steps),
            });
        }
        let mut losses = Vec::new();
        for s in state.steps()..job.steps {
            if fault == Some(FaultPoint::Step(s + 1)) {
                handle.exit_mid_step();
            }
            if fault == Some(FaultPoint::Fail(s + 1)) {
                let why = format!("party {id}: TEST HOOK --fault-exit-at fail:{}: failing on purpose", s + 1);
                return Err(cryptgpu_runtime::Error::Invalid(why).into());
            }
            let batch = set.as_ref().map(|set| inputs::batch_of(set, s, job.batch)).transpose()?;
            let data = batch.as_ref().map(|(x, labels)| (x, labels.as_slice()));
            let step = trainer.step_party(p, &mut state, data, job.batch)?;
            if let Some(loss) = step.loss {
                println!("step {}: loss {loss:.4}", s + 1);
                losses.push(loss);
            }
            if fault == Some(FaultPoint::BeforeCheckpoint(s + 1)) {
                fault_exit(&format!("after step {} and before writing its checkpoint (test hook)", s + 1));
            }
            if (s + 1) % every == 0 || s + 1 == job.steps {
                trainer.save_checkpoint(p, &state, &dir)?;
            }
        }
        let trained = trainer.reveal_params_to(p, &state, roles.model_owner)?;
        Ok((from, trained))
    })();
    let (from, trained) = finish(&mut party, &handle, &abort, result)?;
    let resumed = if from > 0 { format!(", resumed after step {from}") } else { String::new() };
    match trained {
        Some(params) => {
            weights::save(trainer.graph(), &params, &job.output).map_err(|e| DeployError::Output {
                party: id,
                path: job.output.clone(),
                what: "trained weights",
                problem: e.to_string(),
            })?;
            Ok(format!("party {id}: {} steps{resumed}; trained weights written to {}", job.steps, job.output.display()))
        }
        None => Ok(format!("party {id}: {} steps{resumed}; checkpoints in {}", job.steps, dir.display())),
    }
}

/// After the parties agreed to continue from step `from` (0: from the start): this party's checkpoints of later
/// steps belong to the interrupted run, whose shares must never be paired with the new run's (the same step written
/// by the two runs holds different sharings under fresh keys); they are renamed `*.ckpt.stale`, out of the way.
fn set_aside_newer(id: PartyId, dir: &Path, from: usize) -> Result<(), DeployError> {
    for path in own_checkpoints(id, dir) {
        if step_of(&path).is_some_and(|s| s > from) {
            let mut stale = path.clone().into_os_string();
            stale.push(".stale");
            std::fs::rename(&path, &stale).map_err(|e| DeployError::Checkpoints {
                party: id,
                dir: dir.to_path_buf(),
                problem: format!("cannot set aside {} of the interrupted run: {e}", path.display()),
            })?;
            eprintln!(
                "party {id}: {} is newer than the step all three parties hold ({from}): set aside as {}",
                path.display(),
                Path::new(&stale).display()
            );
        }
    }
    Ok(())
}
