//! Three parties in three network namespaces (Linux, as root): each party runs in its own process, started with
//! `ip netns exec` on this test executable, and talks to the others over mutual TLS across a bridge; the revealed
//! results must equal the in-memory session's. Where namespaces cannot be made (not root, no `ip`, no permission)
//! the test prints `skipped: <why>` and passes. Namespaces are named after this process and deleted on every exit.
//!
//! Topology: a switch namespace holding a bridge, and one namespace per party whose `eth0` (10.77.0.{1,2,3}/24) is
//! a veth whose other end is a port of the bridge.

use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::transport::tls::{connect_tls, load_cert, PeerConfig, TlsIdentity};
use cryptgpu_runtime::{Config, Party, RingTensor, Session};
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set in a party's process: its id. The other variables: the shared directory and the input seed.
const ROLE: &str = "CGPU_NETNS_PARTY";
const DIR: &str = "CGPU_NETNS_DIR";
const SEED: &str = "CGPU_NETNS_SEED";
const T: u32 = 20;
const PORT: u16 = 7100;

fn address(party: usize) -> SocketAddr {
    format!("10.77.0.{}:{PORT}", party + 1).parse().expect("a valid address")
}

/// The namespaces of one test run, deleted (with their links) when dropped.
struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).stderr(Stdio::null()).status();
        }
    }
}

/// Run `ip args`; the error says which command failed and what `ip` said.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The switch and the three party namespaces, wired; `Err(why)` when this machine does not allow it.
fn make_namespaces() -> Result<(Namespaces, [String; 3]), String> {
    if !cfg!(target_os = "linux") {
        return Err("network namespaces need Linux".into());
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run `id`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    let pid = std::process::id();
    let switch = format!("cgpu{pid}s");
    let parties: [String; 3] = core::array::from_fn(|i| format!("cgpu{pid}p{i}"));
    let mut ns = Namespaces { names: Vec::new() };
    for n in std::iter::once(&switch).chain(&parties) {
        ip(&["netns", "add", n])?;
        ns.names.push(n.clone());
    }
    ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &switch, "link", "set", "br0", "up"])?;
    for (i, p) in parties.iter().enumerate() {
        let port = format!("b{i}");
        ip(&["-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", p])?;
        ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", p, "addr", "add", &format!("10.77.0.{}/24", i + 1), "dev", "eth0"])?;
        ip(&["-n", p, "link", "set", "eth0", "up"])?;
        ip(&["-n", p, "link", "set", "lo", "up"])?;
    }
    Ok((ns, parties))
}

/// The inputs of the job, the same in every process for the same seed.
fn inputs(seed: u64) -> (RingTensor, RingTensor) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut fixed = |n: usize, bits: u32| -> Vec<u64> {
        (0..n).map(|_| rng.gen_range(-(1i64 << bits)..(1i64 << bits)) as u64).collect()
    };
    let x = RingTensor::new(&[6, 5], fixed(30, T + 4)).unwrap();
    let y = RingTensor::new(&[5, 3], fixed(15, T + 3)).unwrap();
    (x, y)
}

fn config() -> Config {
    Config { insecure_test_seed: Some(23), timeout: Duration::from_secs(8), ..Config::default() }
}

/// The job of one party: x (party 0's) times y (party 1's), elementwise x ⊙ x, both revealed to all.
fn job(p: &mut Party, x: &RingTensor, y: &RingTensor) -> cryptgpu_runtime::Result<Vec<u64>> {
    let xs = p.share(0, (p.id() == 0).then_some(x), x.shape())?;
    let ys = p.share(1, (p.id() == 1).then_some(y), y.shape())?;
    let prod = p.matmul(&xs, &ys)?;
    let sq = p.mul(&xs, &xs)?;
    let mut out = p.reveal(&prod)?.data().to_vec();
    out.extend(p.reveal(&sq)?.data());
    Ok(out)
}

/// One party, in its namespace's process: connect over TLS, run the job, write the revealed words to `out-N`.
#[test]
#[ignore = "run by three_parties_in_three_network_namespaces, inside a namespace"]
fn netns_party() {
    let Ok(id) = std::env::var(ROLE) else { return };
    let id: usize = id.parse().unwrap();
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let seed: u64 = std::env::var(SEED).unwrap().parse().unwrap();
    let certs = core::array::from_fn(|i| load_cert(&dir.join(format!("party-{i}.crt"))).unwrap());
    let mut peers = PeerConfig::new([address(0), address(1), address(2)], certs, seed);
    peers.timeout = Duration::from_secs(8);
    let identity =
        TlsIdentity::load(&dir.join(format!("party-{id}.crt")), &dir.join(format!("party-{id}.key"))).unwrap();
    let transport = connect_tls(id, &identity, &peers).unwrap();
    let mut party = Party::connect(id, &config(), Box::new(transport), Arc::new(CpuBackend)).unwrap();
    let (x, y) = inputs(seed);
    let out = job(&mut party, &x, &y).unwrap();
    party.finish_program().unwrap();
    let text: Vec<String> = out.iter().map(|w| w.to_string()).collect();
    std::fs::write(dir.join(format!("out-{id}")), text.join(" ")).unwrap();
}

/// Start party `id` in namespace `ns`.
fn spawn(ns: &str, id: usize, dir: &Path, seed: u64) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(["--ignored", "--exact", "netns_party", "--nocapture", "--test-threads", "1"])
        .env(ROLE, id.to_string())
        .env(DIR, dir)
        .env(SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn three_parties_in_three_network_namespaces_match_the_in_memory_session() {
    let (_namespaces, names) = match make_namespaces() {
        Ok(n) => n,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("cgpu-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for id in 0..3 {
        TlsIdentity::generate(id).unwrap().save(&dir, id).unwrap();
    }
    let seed: u64 = rand::random::<u32>() as u64;
    let start = Instant::now();
    // Start order must not matter: the last party first.
    let mut children: Vec<(usize, Child)> = (0..3).rev().map(|id| (id, spawn(&names[id], id, &dir, seed))).collect();
    let deadline = start + Duration::from_secs(20);
    for (id, child) in &mut children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "party {id} failed in its namespace: {}", output(child));
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("party {id} did not finish within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let elapsed = start.elapsed();
    let (x, y) = inputs(seed);
    let want = Session::new(config()).unwrap().run(|p| job(p, &x, &y)).unwrap();
    for (id, want) in want.iter().enumerate() {
        let text = std::fs::read_to_string(dir.join(format!("out-{id}"))).unwrap();
        let got: Vec<u64> = text.split(' ').map(|w| w.parse().unwrap()).collect();
        assert_eq!(&got, want, "party {id}: the result over the namespaces differs from the in-memory session");
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("three parties in three namespaces: {elapsed:?}");
}

/// What a finished child printed (for the failure message).
fn output(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(o) = child.stdout.as_mut() {
        let _ = o.read_to_string(&mut s);
    }
    if let Some(e) = child.stderr.as_mut() {
        let _ = e.read_to_string(&mut s);
    }
    s
}
