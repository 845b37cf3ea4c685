//! The dashboard's time to interactive in real headless Chromium: from
//! navigation start to the page's `prescient-ready` mark (set after its
//! first render with data), read from the page's `performance` timeline,
//! over a real API server in front of an agent replaying
//! `data/sample/gcd.csv.gz` (20 workloads). Target: < 1 s.
//!
//! Prints the median (and min, max) of a series of fresh loads, then runs
//! the same measurement under criterion (`iter_custom` with the in-page
//! times). Run: `cargo bench -p prescient-api --bench dashboard`.

#[path = "../tests/dashboard_support/mod.rs"]
mod dashboard_support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dashboard_support::{Chromedriver, Live, OPERATOR_TOKEN, browser, load_and_measure};

/// Loads measured for the printed median.
const LOADS: usize = 15;

fn tti(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // Drop order: browser, chromedriver, profile, server and agent.
    let live = Live::start("gcd.csv.gz", 20, 1200.0, 12);
    let profile = tempfile::tempdir().expect("a temporary directory");
    let driver = Chromedriver::start().expect("chromedriver");
    let client = rt
        .block_on(browser(&driver, profile.path()))
        .expect("a Chromium session");
    let url = format!("{}/", live.url());
    let about_blank = |client: &fantoccini::Client| {
        rt.block_on(client.goto("about:blank"))
            .expect("about:blank");
    };
    rt.block_on(async {
        client.goto(&url).await.expect("the dashboard");
        client
            .execute(
                &format!(
                    "localStorage.setItem('prescient.token', '{OPERATOR_TOKEN}');\
                     localStorage.setItem('prescient.refresh', 'off'); return null;"
                ),
                vec![],
            )
            .await
            .expect("setting the token");
    });

    let mut times = Vec::with_capacity(LOADS);
    for _ in 0..LOADS {
        about_blank(&client);
        times.push(
            rt.block_on(load_and_measure(&client, &url))
                .expect("a load"),
        );
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "dashboard time to interactive over {LOADS} loads: median {median:.0} ms, min {:.0} ms, max {:.0} ms; target < 1000 ms: {}",
        times[0],
        times[times.len() - 1],
        if median < 1000.0 { "met" } else { "NOT met" }
    );

    let mut g = c.benchmark_group("dashboard");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("time_to_interactive", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                about_blank(&client);
                let ms = rt
                    .block_on(load_and_measure(&client, &url))
                    .expect("a load");
                total += Duration::from_secs_f64(ms / 1000.0);
            }
            total
        })
    });
    g.finish();

    let _ = rt.block_on(client.close());
    drop(driver);
    drop(profile);
    drop(live);
}

criterion_group!(benches, tti);
criterion_main!(benches);
