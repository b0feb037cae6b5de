//! Three real processes on loopback: `cryptgpu keygen` for each party, then three `cryptgpu party` processes over
//! mutual TLS running private LeNet inference on MNIST; and a deployment whose third party never comes.

use cryptgpu::data::{Dataset, Split};
use cryptgpu::dsl::{reference, weights, Tensor};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cryptgpu");

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let d = std::env::temp_dir().join(format!("cryptgpu-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three free loopback ports (bound to port 0, then released).
fn ports() -> [u16; 3] {
    let l: Vec<_> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    core::array::from_fn(|i| l[i].local_addr().unwrap().port())
}

fn setup(dir: &Path, images: usize, timeout_s: f64) -> PathBuf {
    for id in 0..3 {
        let out = Command::new(BIN).args(["keygen", "--id", &id.to_string(), "--out"]).arg(dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = ports();
    let mut toml = format!("session = 77\ntimeout_s = {timeout_s}\n");
    for (id, port) in p.iter().enumerate() {
        toml += &format!(
            "\n[[party]]\nid = {id}\naddress = \"127.0.0.1:{port}\"\ncert = {:?}\nkey = {:?}\n",
            dir.join(format!("party-{id}.crt")),
            dir.join(format!("party-{id}.key"))
        );
    }
    toml += &format!(
        "\n[roles]\nmodel_owner = 1\ndata_owner = 0\nreceiver = 0\n\n[job]\nkind = \"infer\"\nweights = {:?}\ndata = {:?}\nimages = {images}\noutput = {:?}\n",
        root.join("weights/lenet_mnist.safetensors"),
        root.join("data/mnist"),
        dir.join("logits.json")
    );
    let path = dir.join("parties.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn party(id: usize, config: &Path) -> Child {
    Command::new(BIN)
        .args(["party", "--id", &id.to_string(), "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn three_processes_classify_privately_as_the_plaintext_model() {
    let dir = temp_dir("deploy");
    let images = 4;
    let config = setup(&dir, images, 60.0);
    // Start order must not matter: the receiver last.
    let children: Vec<Child> = [2, 1, 0].into_iter().map(|id| party(id, &config)).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let rows: Vec<Vec<f64>> = serde_json::from_str(&std::fs::read_to_string(dir.join("logits.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), images);
    let graph = cryptgpu::lenet_mnist::lenet().unwrap();
    let params =
        weights::load(&graph, Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lenet_mnist.safetensors")).unwrap();
    let set = Dataset::mnist(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"), Split::Test)
        .unwrap()
        .subset(0..images);
    let b = set.batches(images).next().unwrap();
    let plain = reference::infer(&graph, &params, &Tensor::from_vec(&b.shape, b.images.to_vec()).unwrap()).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let want = &plain.data()[i * 10..][..10];
        let err = row.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-2, "image {i}: private {row:?} vs plaintext {want:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_party_that_never_comes_is_named_within_the_timeout() {
    let dir = temp_dir("deploy-missing");
    let config = setup(&dir, 1, 3.0);
    let start = Instant::now();
    let children: Vec<Child> = [0, 1].into_iter().map(|id| party(id, &config)).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a party without its third peer must fail");
        assert!(stderr.contains("party 2"), "the error names the missing party: {stderr}");
    }
    assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
