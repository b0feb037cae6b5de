//! `cryptgpu keygen` writes a party's certificate and key, which load back as a TLS identity.

use cryptgpu::runtime::transport::tls::{load_cert, TlsIdentity};
use std::process::Command;

fn keygen(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryptgpu")).arg("keygen").args(args).output().expect("run");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn keygen_writes_loadable_pem_files_and_never_overwrites_a_key() {
    let dir = std::env::temp_dir().join(format!("cryptgpu-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    for id in ["0", "1"] {
        let (code, stderr) = keygen(&["--id", id, "--out", d]);
        assert_eq!(code, Some(0), "{stderr}");
    }
    let (crt, key) = (dir.join("party-1.crt"), dir.join("party-1.key"));
    let identity = TlsIdentity::load(&crt, &key).unwrap();
    assert_eq!(load_cert(&crt).unwrap(), identity.cert_der);
    assert_ne!(load_cert(&dir.join("party-0.crt")).unwrap(), identity.cert_der, "each party has its own");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (code, stderr) = keygen(&["--id", "1", "--out", d]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(TlsIdentity::load(&crt, &key).unwrap().key_der, identity.key_der, "the key is unchanged");
    let (code, stderr) = keygen(&["--id", "3", "--out", d]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--id must be 0, 1 or 2"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
