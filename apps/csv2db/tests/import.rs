//! importUserJob end to end through the binary: exactly once across kill -9 and failures, and
//! clear errors for bad input. On the embedded SQLite default and on PostgreSQL.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use batch_testkit::{TestDb, on_both_databases};

/// Runs csv2db on a test's database, in its directory.
trait Csv2db {
    fn command(&self, args: &[&str]) -> Command;
    fn run(&self, args: &[&str]) -> Output;
}

impl Csv2db for TestDb {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_csv2db"));
        command
            .arg("--database-url")
            .arg(&self.url)
            .args(args)
            .current_dir(self.dir())
            .env_remove("CSV2DB_CONFIG")
            .env_remove("SPRING_CONFIG_LOCATION")
            .env("CSV2DB_LEASE_SECONDS", "1")
            .env("RUST_LOG", "warn");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run csv2db")
    }
}

/// Writes `rows` distinct people to `file` and the manifest step2 checks.
fn write_people(site: &TestDb, file: &Path, rows: usize) {
    let mut text = String::with_capacity(rows * 16);
    for i in 0..rows {
        text.push_str(&format!("First{i},Last{i}\n"));
    }
    std::fs::write(file, text).expect("write input");
    manifest(site, file);
}

/// Records `file` as it is now in its manifest (generate-people with no new rows).
fn manifest(site: &TestDb, file: &Path) {
    let output = site.run(&[
        "generate-people",
        "--count",
        "0",
        "--file",
        &file.display().to_string(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn kill_minus_9_mid_import_then_restart_writes_every_row_exactly_once(site: TestDb) {
    const ROWS: usize = 300_000;
    let file = site.path("people.csv");
    write_people(&site, &file, ROWS);
    let location = format!("jobFileLocation={}", file.display());
    let args = [
        "importUserJob",
        location.as_str(),
        "count=0",
        "chunkSize=500",
        "batchRun=1",
    ];
    let mut child = site
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = site
            .poll_number("SELECT COALESCE(MAX(WRITE_COUNT), 0) FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step2'")
            .await;
        if written > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "step2 never committed a chunk");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the import finished before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    let committed = site.number("SELECT COUNT(*) FROM people").await;
    let recorded = site
        .number("SELECT WRITE_COUNT FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step2'")
        .await;
    assert_eq!(
        committed, recorded,
        "rows and the step's counter commit together"
    );
    assert_eq!(committed % 500, 0, "only whole chunks commit");
    assert!((committed as usize) < ROWS, "killed mid-import");
    assert_eq!(
        site.column("SELECT STATUS FROM BATCH_JOB_EXECUTION").await,
        ["STARTED"]
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let output = site.run(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        site.number("SELECT COUNT(*) FROM people").await,
        ROWS as i64
    );
    assert_eq!(
        site.number("SELECT COUNT(DISTINCT first_name) FROM people")
            .await,
        ROWS as i64
    );
    assert_eq!(
        site.column("SELECT STATUS FROM BATCH_JOB_EXECUTION ORDER BY JOB_EXECUTION_ID")
            .await,
        ["FAILED", "COMPLETED"],
        "the crashed execution is recovered as FAILED"
    );
    let resumed = site
        .number("SELECT READ_COUNT FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step2' AND JOB_EXECUTION_ID = 2")
        .await;
    assert_eq!(
        resumed,
        ROWS as i64 - committed,
        "the restart reads only what was not committed"
    );
    assert_eq!(
        site.number("SELECT COUNT(*) FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step1'")
            .await,
        1,
        "the completed step1 is not run again"
    );
}

async fn a_bad_line_fails_with_its_line_number_and_a_restart_resumes_after_the_fix(site: TestDb) {
    let file = site.path("people.csv");
    let mut text = String::new();
    for i in 0..25 {
        text.push_str(&format!("First{i},Last{i}\n"));
    }
    text = text.replace("First17,Last17\n", "First17,Last17,Extra\n");
    std::fs::write(&file, &text).expect("write");
    manifest(&site, &file);
    let location = format!("jobFileLocation={}", file.display());
    let args = [
        "importUserJob",
        location.as_str(),
        "count=0",
        "chunkSize=10",
        "batchRun=1",
    ];
    let output = site.run(&args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = site
        .column("SELECT EXIT_MESSAGE FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step2'")
        .await;
    assert!(
        message[0].contains("line 18") && message[0].contains("expected 2 fields, found 3"),
        "{message:?}"
    );
    assert_eq!(
        site.number("SELECT COUNT(*) FROM people").await,
        10,
        "the first chunk committed, the second did not"
    );

    std::fs::write(
        &file,
        text.replace("First17,Last17,Extra\n", "First17,Last17\n"),
    )
    .expect("fix");
    manifest(&site, &file);
    let output = site.run(&["restart", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(site.number("SELECT COUNT(*) FROM people").await, 25);
    assert_eq!(
        site.number("SELECT COUNT(DISTINCT first_name) FROM people")
            .await,
        25
    );
}

async fn bad_lines_within_the_skip_limit_are_skipped_into_a_rejects_file(site: TestDb) {
    let file = site.path("people.csv");
    let long = "x".repeat(21);
    std::fs::write(
        &file,
        format!("Ann,Lee\nBob,{long}\nCat,Fox,Extra\nDan,Ray\n"),
    )
    .expect("write");
    manifest(&site, &file);
    let location = format!("jobFileLocation={}", file.display());
    let output = site.run(&[
        "importUserJob",
        &location,
        "count=0",
        "skipLimit=2",
        "batchRun=1",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        site.column("SELECT first_name FROM people ORDER BY person_id")
            .await,
        ["ANN", "DAN"]
    );
    let counters = site
        .column("SELECT READ_COUNT || '/' || WRITE_COUNT || '/' || READ_SKIP_COUNT || '/' || PROCESS_SKIP_COUNT FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step2'")
        .await;
    assert_eq!(counters, ["3/2/1/1"]);
    let rejects = std::fs::read_to_string(site.path("people.csv.rejects")).expect("rejects file");
    assert!(
        rejects.contains("line 2") || rejects.contains("\n2,"),
        "{rejects}"
    );
    assert!(
        rejects.contains("21 characters") && rejects.contains("expected 2 fields, found 3"),
        "{rejects}"
    );
    assert!(
        rejects.contains(&format!(",\"Bob,{long}\"\n")),
        "the rejected name's line, as in the file: {rejects}"
    );

    let output = site.run(&[
        "importUserJob",
        &location,
        "count=0",
        "skipLimit=1",
        "batchRun=2",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "over the limit: {}",
        stderr(&output)
    );
    let message = site.column("SELECT EXIT_MESSAGE FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step2' ORDER BY STEP_EXECUTION_ID DESC").await;
    assert!(
        message[0].contains("line 3") && message[0].contains("skip limit 1 exceeded"),
        "{message:?}"
    );
}

async fn a_restart_refuses_a_file_changed_since_step1(site: TestDb) {
    let file = site.path("people.csv");
    std::fs::write(&file, "Ann,Lee\nBob,Ray,Extra\n").expect("write");
    let location = format!("jobFileLocation={}", file.display());
    let output = site.run(&["importUserJob", &location, "count=0", "batchRun=1"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Changed behind step1's back; the second time also into a line that fails to read, but
    // the check, which runs alongside the reading, says what is wrong.
    for changed in ["Ann,Lee\nBob,Ray\n", "Ann,Lee,Extra\nBob,Ray\n"] {
        std::fs::write(&file, changed).expect("change the file");
        let output = site.run(&["restart", "1"]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let message = site
            .column("SELECT EXIT_MESSAGE FROM BATCH_STEP_EXECUTION WHERE STEP_NAME = 'step2' ORDER BY STEP_EXECUTION_ID DESC")
            .await;
        assert!(
            message[0].contains("does not match its manifest"),
            "{changed:?}: {message:?}"
        );
        assert_eq!(site.number("SELECT COUNT(*) FROM people").await, 0);
    }
}

async fn the_seed_launch_generates_and_imports(site: TestDb) {
    let location = format!(
        "jobFileLocation={}",
        site.path("test/myfile2.csv").display()
    );
    let output = site.run(&["importUserJob", &location, "batchRun=2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let names = site
        .column("SELECT first_name || ' ' || last_name FROM people")
        .await;
    assert_eq!(names.len(), 10);
    assert!(
        names.iter().all(|name| name == &name.to_uppercase()),
        "{names:?}"
    );
    let again = site.run(&["importUserJob", &location, "batchRun=2"]);
    assert_eq!(
        again.status.code(),
        Some(3),
        "a completed instance is refused"
    );
    let next = site.run(&[
        "importUserJob",
        &location,
        "batchRun=2",
        "count=5",
        "--next",
    ]);
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    assert_eq!(
        site.number("SELECT COUNT(*) FROM people").await,
        10 + 15,
        "step1 appends, step2 imports the file"
    );
}

on_both_databases!(
    kill_minus_9_mid_import_then_restart_writes_every_row_exactly_once,
    a_bad_line_fails_with_its_line_number_and_a_restart_resumes_after_the_fix,
    bad_lines_within_the_skip_limit_are_skipped_into_a_rejects_file,
    a_restart_refuses_a_file_changed_since_step1,
    the_seed_launch_generates_and_imports,
);
