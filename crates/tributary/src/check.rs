//! `tributary check --config FILE`: one line per check, `ok`, `warn` or
//! `FAIL` with a hint; exit 0 when nothing failed, 1 otherwise, 2 when the
//! config itself is unusable.

use std::path::Path;
use std::process::ExitCode;

use tributary_core::check::Outcome;
use tributary_pipeline::check;
use tributary_pipeline::Config;

use crate::report;

pub fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return report::config(&e),
    };
    println!("ok    config: {} is valid", path.display());
    let runtime = match crate::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let lines = runtime.block_on(check::check(&config, &crate::sources::Linked));
    let mut failed = 0;
    for line in &lines {
        let label = match line.finding.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => {
                failed += 1;
                "FAIL"
            }
        };
        println!("{label}  {}: {}", line.subject, line.finding.message);
        if let (Some(hint), false) = (&line.finding.hint, line.finding.outcome == Outcome::Ok) {
            println!("      hint: {hint}");
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        println!("{failed} problem(s) found");
        ExitCode::from(1)
    }
}
