//! Progress on stderr for the command line's long runs (indicatif): a spinner naming what runs, or a bar over
//! training steps with the loss, the bytes sent and the ETA. Both draw only when stderr is a terminal (indicatif's
//! stderr target hides itself otherwise), so piped or captured output carries no bar.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// A spinner on stderr saying `what` runs, with the elapsed time; hidden when stderr is not a terminal.
pub fn spinner(what: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template"));
    bar.set_message(what.into());
    if !bar.is_hidden() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

/// A bar over `steps` training steps on stderr: step, loss and bytes (set with [`step_message`]) and the ETA;
/// hidden when stderr is not a terminal.
pub fn steps(steps: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("step {pos}/{len} {bar:30} {msg} [{elapsed} elapsed, ETA {eta}]")
        .expect("a valid template");
    bar.set_style(style);
    bar
}

/// The message of a training bar after a step: its loss (when revealed) and the bytes sent so far.
pub fn step_message(loss: Option<f64>, bytes: u64) -> String {
    let loss = loss.map_or("loss —".to_string(), |l| format!("loss {l:.4}"));
    format!("{loss}, {:.3} GB sent", bytes as f64 / 1e9)
}

/// Runs `f` under a spinner saying `what`, then clears the spinner.
pub fn during<R>(what: impl Into<String>, f: impl FnOnce() -> R) -> R {
    let bar = spinner(what);
    let r = f();
    bar.finish_and_clear();
    r
}
