use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lbuild::cli::Cli::parse();
    let json = cli.global.json;
    match lbuild::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            // A workspace build or `check` already printed it in its JSON.
            let reported = e.reported_in_json();
            if json && !reported {
                // Editors read stdout: give them the failure in the same shape.
                let doc = serde_json::json!({"error": e.to_string(), "hint": e.hint(), "exit_code": code});
                println!("{doc}");
            }
            // `path:line:col: error: message` when the error points into a
            // file (editors' problem matchers), coloured on a terminal.
            let hint = e.hint();
            eprintln!("{}", lbuild::error_text(&e.to_string(), hint.as_deref()));
            ExitCode::from(code as u8)
        }
    }
}
