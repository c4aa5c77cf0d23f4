//! Integration tests of the xinyong workspace: one test binary, one module per topic.
//! PostgreSQL tests need `XY_TEST_PG_URL` (set by `scripts/test.sh`, which starts a throwaway cluster).

mod common;
mod http;
mod ingest;
mod service;
mod stores;
