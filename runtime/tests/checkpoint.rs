//! Training checkpoints: each party's own shares on its own disk, written atomically, verified by checksum, and a
//! resume from the newest step all three hold that ends with exactly the model of an uninterrupted run.

use cryptgpu_dsl::{Builder, Graph, Layer, Linear, Params, Tensor};
use cryptgpu_runtime::checkpoint::{valid_steps, Checkpoint, KEEP};
use cryptgpu_runtime::executor::Roles;
use cryptgpu_runtime::training::{TrainConfig, TrainState, Trainer};
use cryptgpu_runtime::{Config, Error, Party, Result, Session};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

fn mlp() -> Graph {
    let mut b = Builder::new();
    b.layer("fc1", Linear::new(4, 8)).layer("relu", Layer::Relu).layer("fc2", Linear::new(8, 3));
    b.build("MLP", &[4]).expect("graph")
}

type Batches = Vec<(Tensor, Vec<usize>)>;

fn batches(n: usize, rng: &mut StdRng) -> Batches {
    (0..n).map(|_| (Tensor::randn(&[6, 4], 1.0, rng), (0..6).map(|_| rng.gen_range(0..3)).collect())).collect()
}

/// A fresh, unique directory per test (under the system temp dir); removed at the end.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let d = std::env::temp_dir().join(format!("cryptgpu-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn party(&self, id: usize) -> PathBuf {
        self.0.join(format!("party{id}"))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sessions with the same (test-only) keys, as a restarted deployment with the same keys would have.
fn session() -> Session {
    Session::new(Config { insecure_test_seed: Some(7), ..Config::default() }).expect("session")
}

fn trainer() -> Trainer {
    Trainer::new(mlp(), Roles::default(), TrainConfig::new(0.3).with_momentum(0.9)).expect("trainer")
}

/// Steps `from..to` on `state`, saving a checkpoint after each step listed in `save`.
fn steps(
    t: &Trainer,
    p: &mut Party,
    st: &mut TrainState,
    data: &Batches,
    to: usize,
    save: &[usize],
    dir: &Path,
) -> Result<()> {
    for (x, labels) in &data[st.steps()..to] {
        let mine = (p.id() == t.roles().data_owner).then_some((x, labels.as_slice()));
        t.step_party(p, st, mine, 6)?;
        if save.contains(&st.steps()) {
            t.save_checkpoint(p, st, dir)?;
        }
    }
    Ok(())
}

fn reveal(t: &Trainer, p: &mut Party, st: &TrainState) -> Result<Option<Params>> {
    t.reveal_params_to(p, st, t.roles().model_owner)
}

fn owners(result: [Option<Params>; 3]) -> Params {
    result.into_iter().flatten().next().expect("the model owner's parameters")
}

#[test]
fn a_resumed_run_ends_with_exactly_the_uninterrupted_model() {
    let mut rng = StdRng::seed_from_u64(11);
    let (graph, t) = (mlp(), trainer());
    let params = Params::kaiming(&graph, &mut rng);
    let data = batches(5, &mut rng);
    let tmp = TempDir::new("resume");
    let owner = |p: &Party| (p.id() == t.roles().model_owner).then_some(&params);
    // Uninterrupted: five steps.
    let whole = owners(
        session()
            .run(|p| {
                let mut st = t.share_params(p, owner(p))?;
                steps(&t, p, &mut st, &data, 5, &[], &tmp.0)?;
                reveal(&t, p, &st)
            })
            .expect("uninterrupted"),
    );
    // Interrupted: checkpoints after steps 2 and 3, then party 1 dies during step 4.
    let crashed = session().run(|p| {
        let dir = tmp.party(p.id());
        let mut st = t.share_params(p, owner(p))?;
        steps(&t, p, &mut st, &data, 3, &[2, 3], &dir)?;
        if p.id() == 1 {
            panic!("party 1 dies during step 4");
        }
        steps(&t, p, &mut st, &data, 4, &[], &dir)?;
        Ok(None::<Params>)
    });
    assert!(matches!(crashed, Err(Error::PartyPanicked { party: 1, .. })), "{crashed:?}");
    for id in 0..3 {
        assert_eq!(valid_steps(&tmp.party(id), id, "MLP"), vec![2, 3], "party {id}'s checkpoints");
    }
    // Resume in new sessions (as new processes would): from step 3, two more steps.
    let resumed = owners(
        session()
            .run(|p| {
                let dir = tmp.party(p.id());
                let mut st = t.resume_party(p, &dir)?.expect("a common checkpoint");
                assert_eq!(st.steps(), 3);
                steps(&t, p, &mut st, &data, 5, &[], &dir)?;
                reveal(&t, p, &st)
            })
            .expect("resumed"),
    );
    for (k, w) in whole.iter() {
        let r = resumed.get(k).expect("same tensors");
        assert_eq!(w.data(), r.data(), "tensor {k} differs from the uninterrupted run");
    }
}

#[test]
fn the_parties_resume_from_the_newest_step_all_three_hold() {
    let mut rng = StdRng::seed_from_u64(12);
    let (graph, t) = (mlp(), trainer());
    let params = Params::kaiming(&graph, &mut rng);
    let data = batches(3, &mut rng);
    let tmp = TempDir::new("agree");
    session()
        .run(|p| {
            let mut st = t.share_params(p, (p.id() == 0).then_some(&params))?;
            steps(&t, p, &mut st, &data, 3, &[1, 2, 3], &tmp.party(p.id()))
        })
        .expect("training");
    for id in 0..3 {
        assert_eq!(valid_steps(&tmp.party(id), id, "MLP"), vec![2, 3], "only the {KEEP} newest are kept");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.party(id)).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), KEEP, "no temporary files are left");
    }
    // Party 2 lost step 3 (it crashed before its write completed): everyone resumes from step 2.
    std::fs::remove_file(tmp.party(2).join("party2-step0000000003.ckpt")).unwrap();
    let got = session().run(|p| Ok(t.resume_party(p, &tmp.party(p.id()))?.map(|s| s.steps()))).expect("resume");
    assert_eq!(got, [Some(2), Some(2), Some(2)]);
    // A corrupt checkpoint does not count: party 0's step 2 flipped → no common step.
    let path = tmp.party(0).join("party0-step0000000002.ckpt");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = Checkpoint::read(&path).expect_err("corrupt");
    assert!(e.to_string().contains("checksum"), "{e}");
    let got = session().run(|p| Ok(t.resume_party(p, &tmp.party(p.id()))?.is_none())).expect("resume");
    assert_eq!(got, [true, true, true], "no checkpoint in common: start from scratch");
}

#[test]
fn broken_checkpoint_files_are_explained() {
    let tmp = TempDir::new("broken");
    let path = tmp.0.join("party0-step0000000001.ckpt");
    for (bytes, expect) in [
        (b"hello".to_vec(), "not a cryptgpu checkpoint"),
        (b"cryptgpu-ckpt\0\0\x01".iter().copied().chain([0u8; 40]).collect(), "checksum"),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let e = Checkpoint::read(&path).expect_err("broken");
        assert!(e.to_string().contains(expect) && e.to_string().contains("party0-step"), "{e}");
    }
    let e = Checkpoint::read(&tmp.0.join("missing.ckpt")).expect_err("missing");
    assert!(e.to_string().contains("cannot be read"), "{e}");
}
