//! A SQLite statement whose text parameters are bound without copying them.
//!
//! rusqlite binds every text as `SQLITE_TRANSIENT`, so SQLite copies each value into memory of its
//! own before the statement runs. For the ingest's inserts that copy (about 1 KiB a record, mostly
//! the payload) and its allocation were a fifth of the batch writer's time. Here texts are bound as
//! `SQLITE_STATIC`: SQLite reads them where they are while the statement runs.
//!
//! That is sound only while the bound memory outlives the binding. [`BorrowedStatement::execute`]
//! therefore binds, runs, resets and clears every binding inside one call, while its parameters are
//! borrowed: no pointer SQLite holds outlives that call. This module is the store's only `unsafe`
//! code; every block says why it is sound.

#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

use rusqlite::{Connection, ffi};

use crate::StoreError;
use crate::native::sqlite_error;

/// One value bound to a parameter, borrowed for the call that binds it (unlike
/// [`crate::flows::Param`], the owned parameter of flow statements on either engine).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Int(i64),
    Text(&'a str),
    Null,
}

/// For statements run through rusqlite (which copies texts), so that both kinds bind the same
/// parameter lists.
impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{Null, ToSqlOutput};
        Ok(match *self {
            Self::Int(v) => ToSqlOutput::from(v),
            Self::Text(s) => ToSqlOutput::from(s),
            Self::Null => ToSqlOutput::from(Null),
        })
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(s: &'a str) -> Self {
        Self::Text(s)
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Self::Null, Self::Text)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Self::Null, Self::Int)
    }
}

/// A prepared statement on a connection it cannot outlive, executed with borrowed parameters.
pub(crate) struct BorrowedStatement<'conn> {
    db: *mut ffi::sqlite3,
    stmt: NonNull<ffi::sqlite3_stmt>,
    parameters: c_int,
    _conn: PhantomData<&'conn Connection>,
}

fn failure(db: *mut ffi::sqlite3, code: c_int) -> StoreError {
    // SAFETY: `db` is the open handle of a connection borrowed for the statement's lifetime;
    // `sqlite3_errmsg` returns a NUL-terminated string owned by SQLite, valid until the next call on
    // this connection, and it is copied before anything else runs on it.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db);
        (!text.is_null()).then(|| {
            std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned()
        })
    };
    sqlite_error(rusqlite::Error::SqliteFailure(
        ffi::Error::new(code),
        message,
    ))
}

impl<'conn> BorrowedStatement<'conn> {
    /// Prepare `sql` (one statement) on `conn`.
    pub(crate) fn prepare(conn: &'conn Connection, sql: &str) -> Result<Self, StoreError> {
        let length = c_int::try_from(sql.len())
            .map_err(|_| StoreError::Corrupt("statement text too long".into()))?;
        // SAFETY: the handle belongs to `conn`, which the returned statement borrows, so it stays
        // open for as long as the statement exists.
        let db = unsafe { conn.handle() };
        let mut stmt = std::ptr::null_mut();
        let mut tail = std::ptr::null();
        // SAFETY: `sql` is valid for `length` bytes (no NUL terminator is needed when a length is
        // given); `stmt` and `tail` are valid out-pointers.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(
                db,
                sql.as_ptr().cast::<c_char>(),
                length,
                &mut stmt,
                &mut tail,
            )
        };
        if code != ffi::SQLITE_OK {
            return Err(failure(db, code));
        }
        let stmt =
            NonNull::new(stmt).ok_or_else(|| StoreError::Corrupt("empty statement text".into()))?;
        // SAFETY: `stmt` is the statement just prepared.
        let parameters = unsafe { ffi::sqlite3_bind_parameter_count(stmt.as_ptr()) };
        let prepared = Self {
            db,
            stmt,
            parameters,
            _conn: PhantomData,
        };
        // `tail` points into `sql` at the end of the first statement; anything after it but
        // whitespace would be silently ignored, so refuse it.
        let used = (tail as usize).saturating_sub(sql.as_ptr() as usize);
        if !sql.get(used..).is_some_and(|rest| rest.trim().is_empty()) {
            return Err(StoreError::Corrupt("more than one statement".into()));
        }
        Ok(prepared)
    }

    /// Bind `params` to the statement's parameters in order (exactly as many as it has), run it to
    /// completion (it must return no rows), and release every binding before returning.
    pub(crate) fn execute<'p>(
        &mut self,
        params: impl IntoIterator<Item = Param<'p>>,
    ) -> Result<(), StoreError> {
        let result = self.bind_and_step(params);
        let stmt = self.stmt.as_ptr();
        // SAFETY: `stmt` is a live statement of this connection. After reset and clear, SQLite holds
        // no pointer to the parameters bound above, which are still borrowed here.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        result
    }

    fn bind_and_step<'p>(
        &mut self,
        params: impl IntoIterator<Item = Param<'p>>,
    ) -> Result<(), StoreError> {
        let stmt = self.stmt.as_ptr();
        let mut index: c_int = 0;
        for param in params {
            index += 1;
            if index > self.parameters {
                return Err(StoreError::Corrupt(format!(
                    "{index} values for a statement of {} parameters",
                    self.parameters
                )));
            }
            // SAFETY: `stmt` is live and `index` is within 1..=parameters. A text is bound as
            // SQLITE_STATIC: it points into memory borrowed for the whole of `execute`, which
            // clears the binding before it returns. Rust strings are UTF-8, as declared.
            let code = unsafe {
                match param {
                    Param::Int(v) => ffi::sqlite3_bind_int64(stmt, index, v),
                    Param::Null => ffi::sqlite3_bind_null(stmt, index),
                    Param::Text(s) => ffi::sqlite3_bind_text64(
                        stmt,
                        index,
                        s.as_ptr().cast::<c_char>(),
                        s.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                }
            };
            if code != ffi::SQLITE_OK {
                return Err(failure(self.db, code));
            }
        }
        if index != self.parameters {
            return Err(StoreError::Corrupt(format!(
                "{index} values for a statement of {} parameters",
                self.parameters
            )));
        }
        // SAFETY: every parameter of the live statement `stmt` is bound to memory that outlives
        // this call.
        match unsafe { ffi::sqlite3_step(stmt) } {
            ffi::SQLITE_DONE => Ok(()),
            ffi::SQLITE_ROW => Err(StoreError::Corrupt(
                "a write statement returned rows".into(),
            )),
            code => Err(failure(self.db, code)),
        }
    }
}

impl Drop for BorrowedStatement<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is live and finalized exactly once, here; its connection is still
        // open (borrowed for the statement's lifetime).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BorrowedStatement, Param};
    use rusqlite::Connection;

    fn table() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c TEXT UNIQUE)")
            .unwrap();
        c
    }

    #[test]
    fn values_are_stored_as_bound_and_outlive_their_strings() {
        let c = table();
        {
            let mut st = BorrowedStatement::prepare(&c, "INSERT INTO t VALUES (?, ?, ?)").unwrap();
            for i in 0..100i64 {
                // Each row's strings are dropped right after the call that bound them.
                let b = format!("文本 {i} \"quoted\"");
                let c_value = (i % 2 == 0).then(|| format!("key-{i}"));
                st.execute([
                    Param::Int(i),
                    Param::Text(&b),
                    Param::from(c_value.as_deref()),
                ])
                .unwrap();
            }
        }
        let rows: Vec<(i64, String, Option<String>)> = c
            .prepare("SELECT a, b, c FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 100);
        for (i, (a, b, c_value)) in rows.into_iter().enumerate() {
            let i = i as i64;
            assert_eq!(a, i);
            assert_eq!(b, format!("文本 {i} \"quoted\""));
            assert_eq!(c_value, (i % 2 == 0).then(|| format!("key-{i}")));
        }
    }

    #[test]
    fn wrong_parameter_counts_and_constraint_failures_are_errors() {
        let c = table();
        let mut st = BorrowedStatement::prepare(&c, "INSERT INTO t VALUES (?, ?, ?)").unwrap();
        assert!(st.execute([Param::Int(1), Param::Null]).is_err());
        assert!(
            st.execute([Param::Int(1), Param::Null, Param::Null, Param::Null])
                .is_err()
        );
        st.execute([Param::Int(1), Param::Text("x"), Param::Text("k")])
            .unwrap();
        let dup = st
            .execute([Param::Int(2), Param::Text("y"), Param::Text("k")])
            .unwrap_err();
        assert!(dup.to_string().contains("UNIQUE"), "{dup}");
        // The statement is usable again after a failure.
        st.execute([Param::Int(3), Param::Text("z"), Param::Text("k3")])
            .unwrap();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn bad_statements_are_refused() {
        let c = table();
        assert!(BorrowedStatement::prepare(&c, "INSERT INTO nowhere VALUES (?)").is_err());
        assert!(BorrowedStatement::prepare(&c, "").is_err());
        assert!(
            BorrowedStatement::prepare(&c, "INSERT INTO t VALUES (1, 'a', 'b'); DELETE FROM t")
                .is_err()
        );
        let mut st = BorrowedStatement::prepare(&c, "SELECT a FROM t").unwrap();
        c.execute("INSERT INTO t VALUES (1, 'a', 'b')", []).unwrap();
        assert!(st.execute([]).is_err(), "a statement returning rows");
    }
}
