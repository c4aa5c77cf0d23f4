//! What the federation's test files share: the test day, development-PKI credentials, and a
//! capture of every log line (to prove what a node never logs).
#![allow(dead_code)] // each test file uses a part

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use xy_transport::Credentials;
use xy_transport::devpki::PkiLayout;

/// The day the tests run on.
pub(crate) fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

/// A member's credentials of the development PKI, with its CRL.
pub(crate) fn credentials(layout: &PkiLayout, member: &str) -> Credentials {
    let files = layout.member(member);
    Credentials::load(
        &files.cert,
        &files.key,
        &layout.ca_cert(),
        Some(&layout.crl()),
    )
    .unwrap()
}

/// Every log line written since [`capture_logs`].
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The lines so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture every log line of the process from now on. Global, because a node's tasks run on the
/// runtime's worker threads: call it once per test binary (one test per file that uses it).
pub(crate) fn capture_logs() -> Captured {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    logs
}
