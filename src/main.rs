//! `lookout`: see `lookout --help`. Everything lives in the library; this only runs the CLI.

fn main() -> std::process::ExitCode {
    lookout::cli::run()
}
