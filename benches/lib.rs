//! What the benchmarks beside this file share: logging, the row count and the runtime.

/// Log to stderr at the level of `XY_LOG` (default `warn`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// How many rows a benchmark moves: `XY_BENCH_ROWS` (for a quick look), else `default`.
pub fn rows(default: usize) -> usize {
    std::env::var("XY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A runtime with two workers: this machine's two cores.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
