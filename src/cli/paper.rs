//! `cryptgpu paper`: the CryptGPU paper's experiments ([`cryptgpu::paper`]) with their budgets and outputs.

use super::CmdResult;

/// Reproduce the CryptGPU paper's experiments on this machine (Table 4 with the anchors' communication, Table VI,
/// Fig. 3, Fig. 4 / Table VII, Table VIII, per-layer cost): CSV and JSON per table, SVG plots, Markdown.
#[derive(clap::Args)]
pub struct PaperArgs {
    /// Output directory (created): tables, plots, summary.md, summary.json.
    #[arg(long, default_value = "results/paper")]
    out: std::path::PathBuf,
    /// Run only these experiments (comma separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<cryptgpu::paper::Experiment>,
    /// Ignore the budgets: run every measurement, however long.
    #[arg(long)]
    all: bool,
    /// Time budget in seconds, `N` for every experiment or `EXPERIMENT=N` (comma separated; defaults: table4=420,
    /// table6=300, fig3=240, fig4=330, table8=300, layers=30). A measurement estimated not to fit is skipped with
    /// a note.
    #[arg(long, value_delimiter = ',')]
    budget_s: Vec<String>,
    /// The reduced configuration of the tests: LeNet only, small batches, two precisions, a few training steps.
    #[arg(long)]
    quick: bool,
    /// Directory holding `mnist/` and `fashion-mnist/` (`scripts/fetch-data.sh`).
    #[arg(long, default_value = "data")]
    data: std::path::PathBuf,
    /// Print one JSON record per result row (with its `table` name) instead of the Markdown tables.
    #[arg(long)]
    json: bool,
    /// The recorded one-epoch loss curve to plot (skipped with a note when absent).
    #[arg(long, default_value = "results/lenet_mnist_loss_epoch.csv")]
    recorded_loss: std::path::PathBuf,
}

/// Runs the experiments.
pub fn run(a: PaperArgs) -> CmdResult {
    let PaperArgs { out, only, all, budget_s, quick, data, json, recorded_loss } = a;
    let budgets = cryptgpu::paper::parse_budgets(&budget_s)?;
    let opts = cryptgpu::paper::Options { out, only, all, budgets, quick, data, json, recorded_loss };
    cryptgpu::paper::run(&opts)?;
    Ok(())
}
