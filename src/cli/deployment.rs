//! The three-process deployment's commands: `cryptgpu party` (run one party from a config file) and
//! `cryptgpu keygen` (make a party's TLS identity).

use super::CmdResult;

/// `cryptgpu party`'s options.
#[derive(clap::Args)]
pub struct PartyArgs {
    /// This party (0, 1 or 2).
    #[arg(long)]
    id: usize,
    /// The deployment config (TOML): addresses, certificates, roles, job.
    #[arg(long)]
    config: std::path::PathBuf,
    /// Training: continue from the newest checkpoint all three parties hold (they agree on it).
    #[arg(long)]
    resume: bool,
    /// TEST HOOK for the fault-injection tests (tests/deployment.rs): exit abruptly at `keys` (mid key
    /// agreement), `step:N` (mid training step N) or `before-checkpoint:N`; `fail:N` fails with an error at step N
    /// instead. Never in a real deployment.
    #[arg(long, hide = true)]
    fault_exit_at: Option<cryptgpu::deployment::FaultPoint>,
}

/// `cryptgpu party`: run party `id`'s side of the configured job and print its outcome.
pub fn party(a: PartyArgs) -> CmdResult {
    let options = cryptgpu::deployment::RunOptions { resume: a.resume, fault_exit_at: a.fault_exit_at };
    println!("{}", cryptgpu::deployment::run_party(a.id, &a.config, &options)?);
    Ok(())
}

/// `cryptgpu keygen`'s options.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// The party (0, 1 or 2).
    #[arg(long)]
    id: usize,
    /// Output directory (created if missing).
    #[arg(long)]
    out: std::path::PathBuf,
}

/// `cryptgpu keygen`: party `id`'s TLS identity into `out`, refusing to overwrite an existing key.
pub fn keygen(a: KeygenArgs) -> CmdResult {
    use cryptgpu::runtime::transport::tls::TlsIdentity;
    let KeygenArgs { id, out } = a;
    if id > 2 {
        return Err(format!("--id must be 0, 1 or 2, found {id}").into());
    }
    let key = out.join(format!("party-{id}.key"));
    if key.exists() {
        return Err(format!("{} exists: refusing to overwrite a party's private key", key.display()).into());
    }
    TlsIdentity::generate(id)?.save(&out, id)?;
    println!(
        "party {id}: certificate {} (give it to the other two parties), private key {} (keep it)",
        out.join(format!("party-{id}.crt")).display(),
        key.display()
    );
    Ok(())
}
