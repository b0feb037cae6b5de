//! `cryptgpu paper`: the CryptGPU paper's experiments reproduced on this machine, one module each — Table 4 with
//! the anchors' published communication ([`table4`]), Table VI ([`table6`]), Fig. 3 ([`fig3`]), Fig. 4 / Table VII
//! ([`fig4`]), Table VIII ([`table8`]) and the per-layer cost of one model ([`layers`]). Each writes CSV and JSON
//! per table and SVG plots into the output directory and returns a Markdown [`Section`] (what BENCHMARKS.md shows).
//!
//! Every experiment has a time budget ([`Budget`]); before each measurement the harness estimates its cost from
//! what it already measured ([`measure::Lab::estimate`]) and skips what does not fit with a note naming the flag
//! that runs it (`--only <experiment> --budget-s <experiment>=<s>`, or `--all`). `--quick` is the reduced
//! configuration of the tests (LeNet, small batches, two precisions, a few training steps).

pub mod anchors;
pub mod curves;
pub mod fig3;
pub mod fig4;
pub mod layers;
pub mod measure;
pub mod table;
pub mod table4;
pub mod table6;
pub mod table8;

use crate::plots::PlotError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
pub use table::Table;

/// Any failure of the paper harness.
#[derive(Debug, thiserror::Error)]
pub enum PaperError {
    /// The protocols or the session failed.
    #[error(transparent)]
    Runtime(#[from] crate::Error),
    /// A model, its weights or the plaintext reference failed.
    #[error(transparent)]
    Model(#[from] crate::dsl::DslError),
    /// A shipped model could not be built.
    #[error(transparent)]
    Deploy(#[from] crate::deployment::DeployError),
    /// A dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// A result file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The receiver got no logits, or a training run no step.
    #[error("model {model}: the run returned no result to its receiver")]
    NoLogits {
        /// The model.
        model: String,
    },
    /// A `--budget-s` entry that is neither `SECONDS` nor `EXPERIMENT=SECONDS`.
    #[error("--budget-s `{entry}`: expected SECONDS or EXPERIMENT=SECONDS with EXPERIMENT one of {known} and SECONDS a number ≥ 0")]
    Budget {
        /// The entry as given.
        entry: String,
        /// The experiment names.
        known: String,
    },
    /// Experiments that failed (the others ran and were written).
    #[error("failed experiment(s): {experiments}")]
    Failed {
        /// Each failed experiment with its error.
        experiments: String,
    },
    /// A recorded result file has an unexpected format.
    #[error("{path}: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: String,
    },
}

/// The experiments, in the order `cryptgpu paper` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Experiment {
    /// Table 4: LeNet/AlexNet/VGG-16 inference (batch 1, 64) and one training iteration, vs the anchors' bytes.
    Table4,
    /// Table VI: ResNet-50/101/152 private inference at t = 20.
    Table6,
    /// Fig. 3: relative error of the logits vs fractional bits (AlexNet, ResNet-50).
    Fig3,
    /// Fig. 4 / Table VII: private vs plaintext LeNet training curves (MNIST, Fashion-MNIST).
    Fig4,
    /// Table VIII: average vs max pooling (AlexNet, VGG-16; LeNet accuracy on Fashion-MNIST).
    Table8,
    /// Per-layer time and bytes of one model's private inference.
    Layers,
}

impl Experiment {
    /// Every experiment, in run order.
    pub const ALL: [Experiment; 6] = [
        Experiment::Table4,
        Experiment::Table6,
        Experiment::Fig3,
        Experiment::Fig4,
        Experiment::Table8,
        Experiment::Layers,
    ];

    /// The name `--only` and `--budget-s` take.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::Table4 => "table4",
            Experiment::Table6 => "table6",
            Experiment::Fig3 => "fig3",
            Experiment::Fig4 => "fig4",
            Experiment::Table8 => "table8",
            Experiment::Layers => "layers",
        }
    }

    /// Default budget in seconds: the whole default run takes at most about 27 minutes.
    pub fn default_budget(self) -> f64 {
        match self {
            Experiment::Table4 => 420.0,
            Experiment::Table6 => 300.0,
            Experiment::Fig3 => 240.0,
            Experiment::Fig4 => 330.0,
            Experiment::Table8 => 300.0,
            Experiment::Layers => 30.0,
        }
    }
}

/// What `cryptgpu paper` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output directory (created): CSV, JSON and SVG files and `summary.md`.
    pub out: PathBuf,
    /// Experiments to run (empty: all).
    pub only: Vec<Experiment>,
    /// Run everything, ignoring the budgets.
    pub all: bool,
    /// Budget overrides in seconds (`None` key: every experiment).
    pub budgets: Vec<(Option<Experiment>, f64)>,
    /// The reduced configuration of the tests.
    pub quick: bool,
    /// Directory holding `mnist/` and `fashion-mnist/`.
    pub data: PathBuf,
    /// Print one JSON record per table row (with its `table` name) instead of the Markdown.
    pub json: bool,
    /// The recorded one-epoch loss curve (`results/lenet_mnist_loss_epoch.csv`), plotted when present.
    pub recorded_loss: PathBuf,
}

/// Parses `--budget-s` entries: `SECONDS` (every experiment) or `EXPERIMENT=SECONDS`.
pub fn parse_budgets(entries: &[String]) -> Result<Vec<(Option<Experiment>, f64)>, PaperError> {
    let known = Experiment::ALL.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ");
    let bad = |entry: &str| PaperError::Budget { entry: entry.to_string(), known: known.clone() };
    entries
        .iter()
        .map(|entry| {
            let (exp, secs) = match entry.split_once('=') {
                Some((name, secs)) => {
                    let e = Experiment::ALL.iter().find(|e| e.name() == name.trim()).ok_or_else(|| bad(entry))?;
                    (Some(*e), secs)
                }
                None => (None, entry.as_str()),
            };
            match secs.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => Ok((exp, s)),
                _ => Err(bad(entry)),
            }
        })
        .collect()
}

/// An experiment's time budget, counted from its start.
#[derive(Debug, Clone)]
pub struct Budget {
    experiment: Experiment,
    /// `None`: unlimited (`--all`).
    limit: Option<f64>,
    start: Instant,
}

impl Budget {
    /// A budget of `limit` seconds (`None`: unlimited) starting now.
    pub fn new(experiment: Experiment, limit: Option<f64>) -> Budget {
        Budget { experiment, limit, start: Instant::now() }
    }

    /// The experiment this budget is for.
    pub fn experiment(&self) -> Experiment {
        self.experiment
    }

    /// Seconds left (infinite when unlimited).
    pub fn left(&self) -> f64 {
        self.limit.map_or(f64::INFINITY, |l| l - self.start.elapsed().as_secs_f64())
    }

    /// `Ok` when a measurement estimated at `estimate` fits what is left; else the note saying it was skipped and
    /// how to run it.
    pub fn admit(&self, what: &str, estimate: Duration) -> Result<(), String> {
        let (est, left) = (estimate.as_secs_f64(), self.left());
        if est <= left {
            return Ok(());
        }
        let used = self.start.elapsed().as_secs_f64();
        let need = ((used + est) * 1.3 / 10.0).ceil() * 10.0;
        let name = self.experiment.name();
        Err(format!(
            "skipped {what}: estimated {est:.0} s, {:.0} s of the {name} budget ({:.0} s) left — run it with \
             `cargo run --release -- paper --only {name} --budget-s {name}={need:.0}` (or `--all` to run every \
             experiment without budgets)",
            left.max(0.0),
            self.limit.unwrap_or(0.0)
        ))
    }
}

/// One experiment's output: Markdown for BENCHMARKS.md, its tables (written as CSV and JSON) and plots.
#[derive(Debug, Clone)]
pub struct Section {
    /// Which experiment.
    pub experiment: Experiment,
    /// Heading.
    pub title: String,
    /// What was run, how (a paragraph).
    pub intro: String,
    /// The tables.
    pub tables: Vec<Table>,
    /// SVG files written.
    pub plots: Vec<PathBuf>,
    /// Notes: skipped measurements, comparisons, the largest contributors.
    pub notes: Vec<String>,
}

impl Section {
    /// An empty section.
    pub fn new(experiment: Experiment, title: &str, intro: String) -> Section {
        Section { experiment, title: title.into(), intro, tables: Vec::new(), plots: Vec::new(), notes: Vec::new() }
    }

    /// Whether a measurement was skipped for its budget.
    pub fn skipped(&self) -> bool {
        self.notes.iter().any(|n| n.starts_with("skipped"))
    }

    /// The section in Markdown: plots linked by their path as written (relative to where the command ran).
    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n{}\n\n", self.title, self.intro);
        for t in &self.tables {
            s.push_str(&format!("{}:\n\n{}\n", t.title, t.markdown()));
        }
        for p in &self.plots {
            let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            s.push_str(&format!("![{name}]({})\n\n", p.display()));
        }
        for n in &self.notes {
            s.push_str(&format!("- {n}\n"));
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }
        s
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PaperError + '_ {
    move |source| PaperError::Io { path: path.to_path_buf(), source }
}

/// Runs the selected experiments (printing each section's Markdown, or its rows as JSON records, as it ends), writes every table, plot,
/// `summary.md` and `summary.json` into `opts.out`, and returns the sections.
pub fn run(opts: &Options) -> Result<Vec<Section>, PaperError> {
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let selected: Vec<Experiment> =
        Experiment::ALL.into_iter().filter(|e| opts.only.is_empty() || opts.only.contains(e)).collect();
    let mut lab = measure::Lab::new();
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    let started = Instant::now();
    for exp in selected {
        let limit = if opts.all {
            None
        } else {
            let over = opts.budgets.iter().rev().find(|(e, _)| *e == Some(exp) || e.is_none());
            Some(over.map_or(exp.default_budget(), |b| b.1))
        };
        let budget = Budget::new(exp, limit);
        status(&format!("{} (budget {})", exp.name(), limit.map_or("none".into(), |l| format!("{l:.0} s"))));
        let t0 = Instant::now();
        let result = match exp {
            Experiment::Table4 => table4::run(&mut lab, opts, &budget),
            Experiment::Table6 => table6::run(&mut lab, opts, &budget),
            Experiment::Fig3 => fig3::run(&mut lab, opts, &budget),
            Experiment::Fig4 => fig4::run(&mut lab, opts, &budget),
            Experiment::Table8 => table8::run(&mut lab, opts, &budget),
            Experiment::Layers => layers::run(&mut lab, opts, &budget),
        };
        // One experiment's failure is reported and the others still run; the command fails at the end.
        let section = result.unwrap_or_else(|e| {
            eprintln!("error: {}: {e}", exp.name());
            failed.push(format!("{}: {e}", exp.name()));
            let mut s = Section::new(exp, &format!("{} (failed)", exp.name()), String::new());
            s.notes.push(format!("failed: {e}"));
            s
        });
        for t in &section.tables {
            t.write(&opts.out).map_err(io(&opts.out))?;
        }
        status(&format!("{} done in {:.0} s", exp.name(), t0.elapsed().as_secs_f64()));
        if opts.json {
            for r in section.tables.iter().flat_map(|t| t.records()) {
                println!("{r}");
            }
        } else {
            println!("{}", section.markdown());
        }
        sections.push(section);
        write_summary(opts, &sections, started)?;
    }
    if let Some(bar) = SPINNER.get() {
        bar.finish_and_clear();
    }
    if !failed.is_empty() {
        return Err(PaperError::Failed { experiments: failed.join("; ") });
    }
    Ok(sections)
}

/// Writes `summary.md` and `summary.json` for the sections done so far (rewritten after each experiment, so a run
/// that stops keeps what it finished).
fn write_summary(opts: &Options, sections: &[Section], started: Instant) -> Result<(), PaperError> {
    let mut summary = format!(
        "<!-- cryptgpu paper: {} experiment(s), {:.0} s -->\n\n",
        sections.len(),
        started.elapsed().as_secs_f64()
    );
    let mut records = Vec::new();
    for s in sections {
        summary.push_str(&s.markdown());
        records.extend(s.tables.iter().flat_map(|t| t.records()));
    }
    let path = opts.out.join("summary.md");
    std::fs::write(&path, summary).map_err(io(&path))?;
    let path = opts.out.join("summary.json");
    let json = serde_json::to_string_pretty(&records).map_err(|e| io(&path)(std::io::Error::other(e)))?;
    std::fs::write(&path, json + "\n").map_err(io(&path))
}

/// `Some(value)`, or `None` after noting in `section` that the executor refused the run before sharing (the range
/// analysis or the failure probability: a result, not a failure of the harness); other errors pass through.
pub fn or_refused<T>(section: &mut Section, what: &str, r: Result<T, PaperError>) -> Result<Option<T>, PaperError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) => match measure::refusal(&e) {
            Some(m) => {
                section.notes.push(format!("refused {what}: {m}"));
                Ok(None)
            }
            None => Err(e),
        },
    }
}

/// Formats seconds for a table (3 significant digits).
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 100.0 {
        format!("{s:.0}")
    } else if s >= 10.0 {
        format!("{s:.1}")
    } else if s >= 1.0 {
        format!("{s:.2}")
    } else {
        format!("{s:.3}")
    }
}

/// Formats bytes as MB with 3 decimals.
pub fn mb(bytes: f64) -> String {
    format!("{:.3}", bytes / 1e6)
}

/// The progress spinner of `cryptgpu paper` (hidden when stderr is not a terminal), made on first use.
static SPINNER: std::sync::OnceLock<indicatif::ProgressBar> = std::sync::OnceLock::new();

/// Shows `what` (the experiment or measurement that runs now) on the progress spinner.
pub(crate) fn status(what: &str) {
    SPINNER.get_or_init(|| crate::progress::spinner("cryptgpu paper")).set_message(format!("paper: {what}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_skips_say_how_to_run() {
        let b = parse_budgets(&["60".into(), "fig3=5".into()]).unwrap();
        assert_eq!(b, vec![(None, 60.0), (Some(Experiment::Fig3), 5.0)]);
        for bad in ["fig9=3", "x", "table4=-1", "table4=NaN"] {
            let e = parse_budgets(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("table6"), "{e}");
        }
        let budget = Budget::new(Experiment::Table6, Some(10.0));
        assert!(budget.admit("small", Duration::from_secs(1)).is_ok());
        let note = budget.admit("ResNet-152", Duration::from_secs(40)).unwrap_err();
        assert!(note.starts_with("skipped ResNet-152: estimated 40 s"), "{note}");
        assert!(note.contains("--only table6 --budget-s table6=") && note.contains("--all"), "{note}");
        assert!(Budget::new(Experiment::Table6, None).admit("x", Duration::from_secs(1 << 30)).is_ok());
    }
}
