//! A loadgen worker process (see `prescient_loadgen::worker`): serves
//! `<cores> <bytes>` commands from standard input until `quit` or its end.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match prescient_loadgen::worker_main(&args) {
        0 => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::from(2),
    }
}
