//! `fqp list`: the tests of the port's image and what each needs.

use super::{fail, Selection};
use crate::progress::out_line;
use fqp_runner::qualify;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub selection: Selection,
}

impl Args {
    pub fn run(self) -> ExitCode {
        match qualify::list(&self.selection.options()) {
            Ok(lines) => {
                for l in lines {
                    out_line(&l);
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}
