//! Reads traces and reports rows, series and time taken:
//! `cargo run --release -p prescient-trace --example read_trace -- FILE...`

use std::path::Path;
use std::time::Instant;

use prescient_trace::{TraceError, TraceReader};

fn main() -> Result<(), TraceError> {
    for path in std::env::args().skip(1) {
        let start = Instant::now();
        let mut reader = TraceReader::open(Path::new(&path))?;
        let mut rows = 0u64;
        for record in reader.by_ref() {
            record?;
            rows += 1;
        }
        let elapsed = start.elapsed();
        println!(
            "{path}: {rows} rows, {} series, {} bytes in {:.3} s",
            reader.tracked_series(),
            reader.bytes_read(),
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}
