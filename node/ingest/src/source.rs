//! Row sources: CSV, JSON lines, Excel `.xlsx` and database tables, each yielding a header and then
//! data rows of text cells. Problems of a single row (wrong width, oversized, malformed line, formula
//! or merged cells) become row errors, reported for that row; problems of the whole input are
//! [`IngestError`]s.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::IngestError;
use crate::decode::{Utf8Reader, decode};

/// The largest data row accepted (bytes); a larger one is rejected with a reason, not loaded.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// A data row, or the reason it cannot be read.
pub(crate) type RowResult = Result<Vec<String>, RowError>;

/// The outcome of reading one row into the caller's cell buffer.
pub(crate) type RowRead = Option<Result<Result<(), RowError>, IngestError>>;

/// Move a row read as a whole into the caller's buffer.
fn into_cells(row: RowResult, cells: &mut Vec<String>) -> Result<(), RowError> {
    row.map(|r| *cells = r)
}

/// Why one row could not be read as cells.
#[derive(Debug, Clone)]
pub(crate) struct RowError {
    /// The column (header name) at fault, if one is.
    pub(crate) column: Option<String>,
    /// Rule id, e.g. `row_width`.
    pub(crate) rule: &'static str,
    /// Reason in Chinese.
    pub(crate) reason: String,
}

impl RowError {
    fn row(rule: &'static str, reason: String) -> Self {
        Self {
            column: None,
            rule,
            reason,
        }
    }
}

/// A source of rows: a header, then data rows in order.
pub(crate) trait RowSource: Send {
    /// The header, as found in the input.
    fn headers(&self) -> &[String];
    /// Read the next data row into `cells` (reusing its strings), or `None` at the end.
    fn next_row(&mut self, cells: &mut Vec<String>) -> RowRead;
    /// A short description of the encoding or format, for the batch record.
    fn describe(&self) -> String;
}

/// Counts bytes read, for the progress bar.
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// CSV in UTF-8 or GBK, with or without BOM, LF or CRLF.
pub(crate) struct CsvSource<R: Read> {
    reader: csv::Reader<Utf8Reader<R>>,
    headers: Vec<String>,
    record: csv::ByteRecord,
    encoding: &'static str,
}

impl<R: Read + Send> CsvSource<R> {
    pub(crate) fn new(inner: R) -> Result<Self, IngestError> {
        let decoded = decode(inner).map_err(IngestError::Read)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(decoded.reader);
        let mut header = csv::ByteRecord::new();
        match reader.read_byte_record(&mut header) {
            Ok(true) => {}
            Ok(false) => return Err(IngestError::Empty),
            Err(e) => return Err(IngestError::Malformed(format!("表头无法解析：{e}"))),
        }
        let headers: Vec<String> = header.iter().map(lossy).collect();
        if headers.iter().any(|h| h.contains('\u{FFFD}')) {
            return Err(IngestError::Malformed(
                "表头含有无法解码的字符（文件编码错误）".into(),
            ));
        }
        Ok(Self {
            reader,
            headers,
            record: csv::ByteRecord::new(),
            encoding: decoded.encoding.name(),
        })
    }
}

impl<R: Read + Send> RowSource for CsvSource<R> {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn next_row(&mut self, cells: &mut Vec<String>) -> RowRead {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let r = &self.record;
                if r.as_slice().len() > MAX_ROW_BYTES {
                    return Some(Ok(Err(RowError::row(
                        "row_size",
                        format!(
                            "行数据 {} 字节，超过上限 {MAX_ROW_BYTES} 字节",
                            r.as_slice().len()
                        ),
                    ))));
                }
                if r.len() != self.headers.len() {
                    return Some(Ok(Err(RowError::row(
                        "row_width",
                        format!(
                            "本行有 {} 列，表头有 {} 列（文件可能被截断或含未转义的分隔符）",
                            r.len(),
                            self.headers.len()
                        ),
                    ))));
                }
                cells.resize_with(r.len(), String::new);
                // The row's fields lie end to end in one buffer: validated as UTF-8 at once (SIMD;
                // most bytes are Chinese text, where the standard library's check of each short
                // field runs at a fraction of the speed), each field is then a slice of it that
                // starts and ends on character boundaries. A field that does not (a character cut
                // between two fields) or a row that is not UTF-8 is read field by field, and an
                // invalid field keeps replacement characters (the row is then rejected).
                let whole = simdutf8::basic::from_utf8(r.as_slice()).ok();
                for (i, (cell, field)) in cells.iter_mut().zip(r.iter()).enumerate() {
                    cell.clear();
                    let text = match whole.and_then(|w| r.range(i).and_then(|range| w.get(range))) {
                        Some(text) => Ok(text),
                        None => std::str::from_utf8(field),
                    };
                    match text {
                        Ok(text) => cell.push_str(text),
                        Err(_) => cell.push_str(&String::from_utf8_lossy(field)),
                    }
                }
                Some(Ok(Ok(())))
            }
            // csv errors are I/O errors or UTF-8 errors only; with byte records only I/O remains.
            Err(e) => Some(Err(IngestError::Malformed(format!("读取 CSV 失败：{e}")))),
        }
    }

    fn describe(&self) -> String {
        format!("csv/{}", self.encoding)
    }
}

/// JSON lines: one object per line, field names as keys. The header grows as new keys appear.
pub(crate) struct JsonlSource<R: Read> {
    reader: BufReader<R>,
    headers: Vec<String>,
    line: Vec<u8>,
    pending: Option<RowResult>,
}

impl<R: Read + Send> JsonlSource<R> {
    pub(crate) fn new(inner: R) -> Result<Self, IngestError> {
        let mut s = Self {
            reader: BufReader::with_capacity(256 * 1024, inner),
            headers: Vec::new(),
            line: Vec::new(),
            pending: None,
        };
        // Read the first row so that the header is known before the category is detected.
        match s.read_row() {
            Ok(Some(first)) => s.pending = Some(first),
            Ok(None) => return Err(IngestError::Empty),
            Err(e) => return Err(e),
        }
        if s.headers.is_empty() {
            return Err(IngestError::Malformed(
                "第一行不是 JSON 对象，无法确定字段".into(),
            ));
        }
        Ok(s)
    }

    fn read_row(&mut self) -> Result<Option<RowResult>, IngestError> {
        loop {
            self.line.clear();
            let n = (&mut self.reader)
                .take(MAX_ROW_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(IngestError::Read)?;
            if n == 0 {
                return Ok(None);
            }
            if self.line.len() > MAX_ROW_BYTES && !self.line.ends_with(b"\n") {
                // Skip the rest of the oversized line.
                let mut skipped = self.line.len();
                loop {
                    let buf = self.reader.fill_buf().map_err(IngestError::Read)?;
                    if buf.is_empty() {
                        break;
                    }
                    match buf.iter().position(|&b| b == b'\n') {
                        Some(p) => {
                            skipped += p + 1;
                            self.reader.consume(p + 1);
                            break;
                        }
                        None => {
                            let l = buf.len();
                            skipped += l;
                            self.reader.consume(l);
                        }
                    }
                }
                return Ok(Some(Err(RowError::row(
                    "row_size",
                    format!("行数据 {skipped} 字节，超过上限 {MAX_ROW_BYTES} 字节"),
                ))));
            }
            let text = trim_line(&self.line);
            if text.is_empty() {
                continue;
            }
            let text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(text);
            let value: serde_json::Value = match serde_json::from_slice(text) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(Some(Err(RowError::row(
                        "json",
                        format!("不是合法的 JSON：{e}"),
                    ))));
                }
            };
            let serde_json::Value::Object(map) = value else {
                return Ok(Some(Err(RowError::row("json", "不是 JSON 对象".into()))));
            };
            let mut cells = vec![String::new(); self.headers.len()];
            for (k, v) in map {
                let cell = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Null => String::new(),
                    _ => {
                        return Ok(Some(Err(RowError {
                            column: Some(k.clone()),
                            rule: "json",
                            reason: format!("字段 {k} 不是标量值"),
                        })));
                    }
                };
                match self.headers.iter().position(|h| *h == k) {
                    Some(i) => cells[i] = cell,
                    None => {
                        self.headers.push(k);
                        cells.push(cell);
                    }
                }
            }
            return Ok(Some(Ok(cells)));
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

impl<R: Read + Send> RowSource for JsonlSource<R> {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn next_row(&mut self, cells: &mut Vec<String>) -> RowRead {
        if let Some(p) = self.pending.take() {
            return Some(Ok(into_cells(p, cells)));
        }
        self.read_row()
            .transpose()
            .map(|r| r.map(|row| into_cells(row, cells)))
    }

    fn describe(&self) -> String {
        "jsonl/utf-8".into()
    }
}

/// Excel `.xlsx`: the first sheet, header in its first row. Formula cells and merged cells are
/// refused for their rows: a formula's cached value may be stale, and a merged cell leaves the rows
/// it covers without their own values.
pub(crate) struct XlsxSource {
    headers: Vec<String>,
    rows: std::vec::IntoIter<RowResult>,
}

impl XlsxSource {
    pub(crate) fn open(path: &Path) -> Result<Self, IngestError> {
        let file = std::fs::File::open(path).map_err(IngestError::Read)?;
        Self::from_reader(std::io::BufReader::new(file))
    }

    /// Read a workbook from any seekable reader (a file, or bytes in memory).
    pub(crate) fn from_reader<R: Read + std::io::Seek>(reader: R) -> Result<Self, IngestError> {
        use calamine::{Data, Reader, Xlsx};
        let excel =
            |e: calamine::XlsxError| IngestError::Malformed(format!("Excel 文件无法读取：{e}"));
        let mut book: Xlsx<R> = Xlsx::new(reader).map_err(excel)?;
        let name = book
            .sheet_names()
            .first()
            .cloned()
            .ok_or(IngestError::Empty)?;
        let range = book.worksheet_range(&name).map_err(excel)?;
        let formulas = book.worksheet_formula(&name).map_err(excel)?;
        let merged = match book.worksheet_merge_cells(&name) {
            Some(r) => r.map_err(excel)?,
            None => Vec::new(),
        };
        let Some((first_row, first_col)) = range.start() else {
            return Err(IngestError::Empty);
        };
        let mut rows_iter = range.rows();
        let header_row = rows_iter.next().ok_or(IngestError::Empty)?;
        let headers: Vec<String> = header_row.iter().map(cell_text).collect();
        if merged
            .iter()
            .any(|m| m.start.0 <= first_row && m.end.0 >= first_row)
        {
            return Err(IngestError::Malformed("表头行含合并单元格".into()));
        }
        let mut rows = Vec::new();
        for (i, row) in rows_iter.enumerate() {
            let abs_row = first_row + 1 + i as u32;
            if row.iter().all(|c| matches!(c, Data::Empty)) {
                continue;
            }
            if let Some(m) = merged
                .iter()
                .find(|m| m.start.0 <= abs_row && m.end.0 >= abs_row)
            {
                let col = (m.start.1.saturating_sub(first_col)) as usize;
                rows.push(Err(RowError {
                    column: headers.get(col).cloned(),
                    rule: "merged_cell",
                    reason: format!(
                        "含合并单元格（第 {}–{} 行），请取消合并并逐行填写",
                        m.start.0 + 1,
                        m.end.0 + 1
                    ),
                }));
                continue;
            }
            let formula_col = (0..row.len()).find(|&c| {
                formulas
                    .get_value((abs_row, first_col + c as u32))
                    .is_some_and(|f| !f.is_empty())
            });
            if let Some(c) = formula_col {
                rows.push(Err(RowError {
                    column: headers.get(c).cloned(),
                    rule: "formula_cell",
                    reason: "单元格含公式，请粘贴为数值后重新提交".into(),
                }));
                continue;
            }
            if let Some(c) = row.iter().position(|c| matches!(c, Data::Error(_))) {
                rows.push(Err(RowError {
                    column: headers.get(c).cloned(),
                    rule: "cell_error",
                    reason: "单元格为错误值".into(),
                }));
                continue;
            }
            let mut cells: Vec<String> = row.iter().map(cell_text).collect();
            cells.resize(headers.len(), String::new());
            rows.push(Ok(cells));
        }
        Ok(Self {
            headers,
            rows: rows.into_iter(),
        })
    }
}

fn cell_text(c: &calamine::Data) -> String {
    use calamine::Data;
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", *f as i64)
            } else {
                f.to_string()
            }
        }
        Data::Bool(b) => b.to_string(),
        Data::DateTime(_) => calamine::DataType::as_datetime(c)
            .map(|d| d.format("%Y/%m/%d").to_string())
            .unwrap_or_default(),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

impl RowSource for XlsxSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }
    fn next_row(&mut self, cells: &mut Vec<String>) -> RowRead {
        self.rows.next().map(|row| Ok(into_cells(row, cells)))
    }
    fn describe(&self) -> String {
        "xlsx".into()
    }
}

/// Rows that arrive over a channel (a database table read by an async task).
pub(crate) struct ChannelSource {
    pub(crate) headers: Vec<String>,
    pub(crate) rx: tokio::sync::mpsc::Receiver<Result<Vec<String>, IngestError>>,
    pub(crate) what: String,
}

impl RowSource for ChannelSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }
    fn next_row(&mut self, cells: &mut Vec<String>) -> RowRead {
        self.rx
            .blocking_recv()
            .map(|r| r.map(|row| into_cells(Ok(row), cells)))
    }
    fn describe(&self) -> String {
        self.what.clone()
    }
}
