//! The streaming CSV reader and the rejects file, on real files.

use std::fs;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batch_core::context::ExecutionContext;
use batch_core::step::item::{BadItem, ItemReader, Read, ReadError, RejectSink};
use batch_io::csv::{CsvItemReader, StringRecord};
use batch_io::rejects::{REJECTS_BYTES_KEY, RejectsFile};
use tempfile::TempDir;

type Pair = (String, String);

fn field(record: &StringRecord, index: usize) -> Result<String, String> {
    record
        .get(index)
        .map(str::to_owned)
        .ok_or_else(|| format!("missing field {}", index + 1))
}

fn pair(record: &StringRecord) -> Result<Pair, String> {
    if record.len() != 2 {
        return Err(format!("expected 2 fields, found {}", record.len()));
    }
    Ok((field(record, 0)?, field(record, 1)?))
}

fn write(dir: &TempDir, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn reader(path: &Path) -> CsvItemReader<Pair> {
    CsvItemReader::new(path, pair).fields(2)
}

async fn opened(path: &Path) -> CsvItemReader<Pair> {
    let mut reader = reader(path);
    reader.open(&ExecutionContext::new()).await.unwrap();
    reader
}

fn p(first: &str, last: &str) -> Pair {
    (first.to_string(), last.to_string())
}

async fn next(reader: &mut CsvItemReader<Pair>) -> Read<Pair> {
    match reader.read().await {
        Ok(Some(read)) => read,
        Ok(None) => panic!("unexpected end of input"),
        Err(ReadError::Bad(item)) => panic!("unexpected bad item: {item}"),
        Err(ReadError::Fatal(error)) => panic!("unexpected failure: {error}"),
    }
}

async fn bad(reader: &mut CsvItemReader<Pair>) -> BadItem {
    match reader.read().await {
        Err(ReadError::Bad(item)) => item,
        Ok(other) => panic!("expected a bad item, got {other:?}"),
        Err(ReadError::Fatal(error)) => panic!("unexpected failure: {error}"),
    }
}

async fn end(reader: &mut CsvItemReader<Pair>) {
    match reader.read().await {
        Ok(None) => {}
        Ok(Some(read)) => panic!("expected the end, got {read:?}"),
        Err(ReadError::Bad(item)) => panic!("expected the end, got bad item {item}"),
        Err(ReadError::Fatal(error)) => panic!("expected the end, got {error}"),
    }
}

async fn read_all(reader: &mut CsvItemReader<Pair>) -> Vec<(u64, Pair)> {
    let mut items = Vec::new();
    while let Some(read) = reader.read().await.unwrap_or_else(|error| match error {
        ReadError::Bad(item) => panic!("unexpected bad item: {item}"),
        ReadError::Fatal(error) => panic!("unexpected failure: {error}"),
    }) {
        items.push((read.line, read.item));
    }
    items
}

#[tokio::test]
async fn reads_every_record_with_its_line() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"Smith,John\nDoe,Jane\nRoe,Rich\n");
    let mut reader = opened(&path).await;
    assert_eq!(
        read_all(&mut reader).await,
        vec![
            (1, p("Smith", "John")),
            (2, p("Doe", "Jane")),
            (3, p("Roe", "Rich")),
        ]
    );
    end(&mut reader).await;
}

/// A processor that rejects an item gets its record back as the file holds it: quotes, spaces
/// and CRLF line ends included, blank lines before it left out, also after a restart.
#[tokio::test]
async fn the_last_item_s_record_reads_back_as_written() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "people.csv",
        b"a1,b1\r\n\"a,2\", b2 \r\n\n\na3,\"b\"\"3\"\na4,b4",
    );
    let mut reader = opened(&path).await;
    assert_eq!(reader.last_raw(), None, "nothing read yet");
    let mut records = Vec::new();
    let mut context = ExecutionContext::new();
    for _ in 0..3 {
        next(&mut reader).await;
        records.push(reader.last_raw().expect("a record"));
        if records.len() == 2 {
            reader.update(&mut context);
        }
    }
    assert_eq!(records, ["a1,b1", "\"a,2\", b2 ", "a3,\"b\"\"3\""]);

    let mut reader = self::reader(&path);
    reader.open(&context).await.unwrap();
    assert_eq!(next(&mut reader).await.item, p("a3", "b\"3"));
    assert_eq!(reader.last_raw().as_deref(), Some("a3,\"b\"\"3\""));
    assert_eq!(next(&mut reader).await.item, p("a4", "b4"));
    assert_eq!(
        reader.last_raw().as_deref(),
        Some("a4,b4"),
        "no line end after it"
    );
}

#[tokio::test]
async fn resumes_at_the_saved_offset_without_reading_the_start_again() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a1,b1\na2,b2\na3,b3\na4,b4\na5,b5\n");
    let mut context = ExecutionContext::new();
    {
        let mut reader = opened(&path).await;
        assert_eq!(next(&mut reader).await.item, p("a1", "b1"));
        assert_eq!(next(&mut reader).await.item, p("a2", "b2"));
        reader.update(&mut context);
    }
    assert_eq!(context.get_i64("csv.position.byte"), Some(12));
    assert_eq!(context.get_i64("csv.position.line"), Some(3));
    assert_eq!(context.get_i64("csv.read.count"), Some(2));

    // Garbage in place of the first two lines: an unbalanced quote and invalid UTF-8 that a
    // reader starting from the beginning would trip over.
    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(b"\"\xff\xff\xff\xff\n\"\xff,\xff\xff\n")
        .unwrap();
    drop(file);

    let mut reader = reader(&path);
    reader.open(&context).await.unwrap();
    assert_eq!(
        read_all(&mut reader).await,
        vec![(3, p("a3", "b3")), (4, p("a4", "b4")), (5, p("a5", "b5")),]
    );
    reader.update(&mut context);
    assert_eq!(context.get_i64("csv.position.byte"), Some(30));
    assert_eq!(context.get_i64("csv.read.count"), Some(5));

    // Restarting at the end reads nothing.
    let mut reader = self::reader(&path);
    reader.open(&context).await.unwrap();
    end(&mut reader).await;
}

#[tokio::test]
async fn resumes_from_a_spring_batch_read_count() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a1,b1\na2,b2\na3,b3\n");
    let mut context = ExecutionContext::new();
    context.put("people.read.count", 2);
    let mut reader = reader(&path).name("people");
    reader.open(&context).await.unwrap();
    assert_eq!(read_all(&mut reader).await, vec![(3, p("a3", "b3"))]);
    reader.update(&mut context);
    assert_eq!(context.get_i64("people.read.count"), Some(3));
    assert_eq!(context.get_i64("people.position.byte"), Some(18));
}

#[tokio::test]
async fn refuses_a_file_shorter_than_the_saved_position() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a1,b1\n");
    let mut context = ExecutionContext::new();
    context.put("csv.position.byte", 100);
    context.put("csv.position.line", 7);
    let error = reader(&path).open(&context).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "input file {} has 6 bytes, fewer than the saved position 100: it changed since the last run",
            path.display()
        )
    );
}

#[tokio::test]
async fn streams_a_large_file_through_a_small_channel() {
    const LINES: u64 = 200_000;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("large.csv");
    let mut out = BufWriter::new(fs::File::create(&path).unwrap());
    for i in 0..LINES {
        writeln!(out, "{i},name {i}").unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();

    for buffer_items in [7, 16_384] {
        let started = Instant::now();
        let mut reader = CsvItemReader::new(&path, |record: &StringRecord| {
            let number: u64 = field(record, 0)?
                .parse()
                .map_err(|error| format!("{error}"))?;
            Ok((number, field(record, 1)?))
        })
        .fields(2)
        .buffer_items(buffer_items);
        reader.open(&ExecutionContext::new()).await.unwrap();
        let mut expected = 0;
        while let Some(read) = reader.read().await.unwrap() {
            assert_eq!(read.item.0, expected);
            assert_eq!(read.line, expected + 1);
            expected += 1;
        }
        assert_eq!(expected, LINES);
        assert_eq!(reader.progress(), Some(1.0));
        eprintln!(
            "read {LINES} records with buffer_items({buffer_items}) in {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn reports_a_wrong_field_count_and_goes_on() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a,b\r\nc,\"d\",e\r\nf,g\r\nh\r\n");
    let mut reader = opened(&path).await;
    assert_eq!(
        next(&mut reader).await,
        Read {
            item: p("a", "b"),
            line: 1
        }
    );
    assert_eq!(
        bad(&mut reader).await,
        BadItem {
            line: Some(2),
            reason: "expected 2 fields, found 3".to_string(),
            raw: "c,\"d\",e".to_string(),
        }
    );
    assert_eq!(
        next(&mut reader).await,
        Read {
            item: p("f", "g"),
            line: 3
        }
    );
    let item = bad(&mut reader).await;
    assert_eq!(item.to_string(), "line 4: expected 2 fields, found 1");
    end(&mut reader).await;
}

#[tokio::test]
async fn reports_invalid_utf8_with_its_line() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a,b\nc,d\xff\xfe\ne,f\n");
    let mut reader = opened(&path).await;
    assert_eq!(next(&mut reader).await.line, 1);
    let item = bad(&mut reader).await;
    assert_eq!(item.line, Some(2));
    assert_eq!(item.reason, "invalid UTF-8 in field 2");
    assert_eq!(item.raw, "c,d\u{fffd}\u{fffd}");
    assert_eq!(
        next(&mut reader).await,
        Read {
            item: p("e", "f"),
            line: 3
        }
    );
    end(&mut reader).await;
}

#[tokio::test]
async fn reports_an_unbalanced_quote_with_its_start_line() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a,b\nc,\"d\ne,f\ng,h\n");
    let mut reader = opened(&path).await;
    assert_eq!(next(&mut reader).await.line, 1);
    let item = bad(&mut reader).await;
    assert_eq!(
        item.to_string(),
        "line 2: unbalanced quote starting on line 2"
    );
    // The rejects file gets the record as the file holds it: up to the end, quote included.
    assert_eq!(item.raw, "c,\"d\ne,f\ng,h");
    end(&mut reader).await;

    // Without a final newline, on the last line.
    let path = write(&dir, "last.csv", b"a,b\r\nc,\"d");
    let mut reader = opened(&path).await;
    assert_eq!(next(&mut reader).await.line, 1);
    let item = bad(&mut reader).await;
    assert_eq!(item.reason, "unbalanced quote starting on line 2");
    assert_eq!(item.raw, "c,\"d");
    end(&mut reader).await;
}

#[tokio::test]
async fn reads_quoted_fields_over_several_lines() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "people.csv",
        b"a,\"x\ny\"\n\"b \"\"q\"\"\",c\n\nd,\"e\nf\"\n",
    );
    let mut reader = opened(&path).await;
    assert_eq!(
        read_all(&mut reader).await,
        vec![
            (1, p("a", "x\ny")),
            (3, p("b \"q\"", "c")),
            (5, p("d", "e\nf")),
        ]
    );
}

#[tokio::test]
async fn fails_to_open_a_missing_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("missing.csv");
    let error = reader(&path)
        .open(&ExecutionContext::new())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot open input file {}: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[tokio::test]
async fn fails_to_open_an_empty_file() {
    let dir = TempDir::new().unwrap();
    for (name, contents) in [("empty.csv", &b""[..]), ("blank.csv", b"\n\r\n\n")] {
        let path = write(&dir, name, contents);
        let error = reader(&path)
            .open(&ExecutionContext::new())
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("input file {} is empty", path.display())
        );
    }
}

#[tokio::test]
async fn fails_to_read_before_open() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a,b\n");
    let mut reader = reader(&path);
    match reader.read().await {
        Err(ReadError::Fatal(error)) => assert!(error.to_string().contains("before it was opened")),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn reads_crlf_files_and_resumes_in_them() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "people.csv",
        b"\"Smith, Jr\",Bob\r\nc,d\r\n\r\ne,\"f\"\r\ng,h",
    );
    let mut context = ExecutionContext::new();
    {
        let mut reader = opened(&path).await;
        assert_eq!(
            next(&mut reader).await,
            Read {
                item: p("Smith, Jr", "Bob"),
                line: 1
            }
        );
        assert_eq!(
            next(&mut reader).await,
            Read {
                item: p("c", "d"),
                line: 2
            }
        );
        reader.update(&mut context);
    }
    let mut reader = reader(&path);
    reader.open(&context).await.unwrap();
    assert_eq!(
        read_all(&mut reader).await,
        vec![(4, p("e", "f")), (5, p("g", "h"))]
    );
}

#[tokio::test]
async fn counts_lines_across_read_chunks_with_crlf_blank_lines_and_quoted_newlines() {
    let dir = TempDir::new().unwrap();
    let mut contents = String::new();
    let mut expected = Vec::new();
    let mut line = 1;
    for i in 0..30_000u64 {
        if i % 500 == 7 {
            contents.push_str(&format!("{i},\"two\r\nlines\"\r\n"));
            expected.push((line, p(&i.to_string(), "two\r\nlines")));
            line += 2;
        } else {
            contents.push_str(&format!("{i},x\r\n"));
            expected.push((line, p(&i.to_string(), "x")));
            line += 1;
        }
        if i % 997 == 3 {
            contents.push_str("\r\n\n");
            line += 2;
        }
    }
    let path = write(&dir, "people.csv", contents.as_bytes());
    let mut reader = opened(&path).await;
    let mut context = ExecutionContext::new();
    let mut got = Vec::new();
    for _ in 0..12_345 {
        let read = next(&mut reader).await;
        got.push((read.line, read.item));
    }
    reader.update(&mut context);
    drop(reader);
    let mut reader = self::reader(&path);
    reader.open(&context).await.unwrap();
    got.extend(read_all(&mut reader).await);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "line numbers differ");
}

#[tokio::test]
async fn skips_the_header_line() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"first,last\na,b\nc,d\n");
    let mut context = ExecutionContext::new();
    {
        let mut reader = reader(&path).has_headers(true);
        reader.open(&context).await.unwrap();
        assert_eq!(
            next(&mut reader).await,
            Read {
                item: p("a", "b"),
                line: 2
            }
        );
        reader.update(&mut context);
    }
    let mut reader = reader(&path).has_headers(true);
    reader.open(&context).await.unwrap();
    assert_eq!(read_all(&mut reader).await, vec![(3, p("c", "d"))]);
}

#[tokio::test]
async fn reports_progress_from_zero_to_one() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "people.csv", b"a,b\nc,d\ne,f\ng,h\n");
    let mut reader = reader(&path);
    assert_eq!(reader.progress(), None);
    reader.open(&ExecutionContext::new()).await.unwrap();
    assert_eq!(reader.progress(), Some(0.0));
    let mut last = 0.0;
    while reader.read().await.unwrap().is_some() {
        let progress = reader.progress().unwrap();
        assert!(
            progress > last && progress <= 1.0,
            "{progress} after {last}"
        );
        last = progress;
    }
    assert_eq!(reader.progress(), Some(1.0));
}

#[tokio::test]
async fn fails_on_a_record_longer_than_the_limit() {
    let dir = TempDir::new().unwrap();
    let mut contents = b"a,b\nc,\"d\n".to_vec();
    contents.extend(std::iter::repeat_n(b'x', 300_000));
    let path = write(&dir, "people.csv", &contents);
    let mut reader = reader(&path).max_record_bytes(100_000);
    reader.open(&ExecutionContext::new()).await.unwrap();
    assert_eq!(next(&mut reader).await.line, 1);
    match reader.read().await {
        Err(ReadError::Fatal(error)) => assert_eq!(
            error.to_string(),
            format!(
                "input file {}: the record starting on line 2 is longer than 100000 bytes (unbalanced quote starting on line 2?)",
                path.display()
            )
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_reader_stops_its_thread() {
    fn parser_threads() -> usize {
        fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "csv-dropped")
            .count()
    }
    let dir = TempDir::new().unwrap();
    let contents: String = (0..50_000).map(|i| format!("{i},x\n")).collect();
    let path = write(&dir, "people.csv", contents.as_bytes());
    let mut reader = reader(&path).name("dropped").buffer_items(8);
    reader.open(&ExecutionContext::new()).await.unwrap();
    next(&mut reader).await;
    assert_eq!(parser_threads(), 1);
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(10);
    while parser_threads() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(parser_threads(), 0);
}

fn bad_item(line: u64, reason: &str, raw: &str) -> BadItem {
    BadItem {
        line: Some(line),
        reason: reason.to_string(),
        raw: raw.to_string(),
    }
}

#[test]
fn rejects_file_writes_a_header_and_csv_lines() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("people.csv");
    let mut rejects = RejectsFile::next_to(&input);
    assert_eq!(rejects.path(), dir.path().join("people.csv.rejects"));
    let mut context = ExecutionContext::new();
    rejects.open(&context).unwrap();
    rejects
        .reject(&bad_item(2, "expected 2 fields, found 3", "c,d,e"))
        .unwrap();
    rejects
        .reject(&bad_item(4, "invalid UTF-8 in field 1", "x"))
        .unwrap();
    rejects.flush(&mut context).unwrap();
    let contents = fs::read_to_string(rejects.path()).unwrap();
    assert_eq!(
        contents,
        "line,reason,record\n2,\"expected 2 fields, found 3\",\"c,d,e\"\n4,invalid UTF-8 in field 1,x\n"
    );
    assert_eq!(
        context.get_i64(REJECTS_BYTES_KEY),
        Some(contents.len() as i64)
    );
}

#[test]
fn rejects_file_truncates_rejects_not_committed() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("people.csv");
    let mut committed = ExecutionContext::new();
    let mut rejects = RejectsFile::next_to(&input);
    rejects.reject(&bad_item(2, "bad", "one")).unwrap();
    rejects.flush(&mut committed).unwrap();
    let after_first = fs::read_to_string(rejects.path()).unwrap();

    // A second chunk flushes its rejects, then its transaction is lost.
    let mut lost = committed.clone();
    rejects.reject(&bad_item(5, "bad", "two")).unwrap();
    rejects.flush(&mut lost).unwrap();
    assert!(fs::read_to_string(rejects.path()).unwrap().contains("two"));
    drop(rejects);

    let mut restarted = RejectsFile::next_to(&input);
    restarted.open(&committed).unwrap();
    assert_eq!(fs::read_to_string(restarted.path()).unwrap(), after_first);
    restarted.reject(&bad_item(5, "bad", "two")).unwrap();
    restarted.flush(&mut committed).unwrap();
    assert_eq!(
        fs::read_to_string(restarted.path()).unwrap(),
        "line,reason,record\n2,bad,one\n5,bad,two\n"
    );
}

#[test]
fn rejects_file_is_not_created_without_rejects() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("people.csv");
    let mut rejects = RejectsFile::next_to(&input);
    let mut context = ExecutionContext::new();
    rejects.open(&context).unwrap();
    rejects.flush(&mut context).unwrap();
    rejects.flush(&mut context).unwrap();
    assert!(!rejects.path().exists());
    assert_eq!(context.get_i64(REJECTS_BYTES_KEY), Some(0));

    // A stale file from an earlier run is removed on a fresh start.
    fs::write(rejects.path(), "line,reason,record\n1,old,x\n").unwrap();
    let mut fresh = RejectsFile::next_to(&input);
    fresh.open(&ExecutionContext::new()).unwrap();
    assert!(!fresh.path().exists());
}
