//! The `sinkhole` binary: a thin shell over [`sinkhole::cli`].

fn main() -> std::process::ExitCode {
    sinkhole::cli::main()
}
