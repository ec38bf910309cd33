//! Threads for background work, such as reading the next chunk ahead, that must not delay the
//! threads waiting on the database.

use std::io;
use std::thread::JoinHandle;

/// How much lower than the process's the CPU priority of a background thread is (a nice
/// increment).
const BACKGROUND_NICENESS: i32 = 10;

/// Starts a thread called `name` (Linux keeps 15 bytes of it) that runs `work` at a lower CPU
/// priority than the rest of the process, where the platform allows it (Linux).
///
/// A chunk step reads and parses the next chunk in bursts, right when the previous one commits
/// and the next one begins: the moments the database waits on csv2db. On a machine with few
/// cores the burst otherwise delays those round trips by a scheduler slice (milliseconds) each.
/// At a lower priority it still gets every cycle the other threads leave, which is most of them.
/// Threads it starts in turn (tokio's blocking pool included) inherit the lower priority, so
/// `work` should not start any.
pub fn spawn_background<F, T>(name: String, work: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        lower_priority();
        work()
    })
}

/// Lowers the calling thread's priority; Linux applies `setpriority` to the calling thread.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let current = rustix::process::getpriority_process(None).unwrap_or(0);
    if let Err(error) = rustix::process::setpriority_process(None, current + BACKGROUND_NICENESS) {
        tracing::debug!(%error, "cannot lower the priority of a background thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn background_threads_run_at_a_lower_priority_than_their_spawner() {
        let spawner = rustix::process::getpriority_process(None).expect("priority");
        let background = spawn_background("background".into(), || {
            rustix::process::getpriority_process(None).expect("priority")
        })
        .expect("spawn")
        .join()
        .expect("join");
        assert_eq!(background, (spawner + BACKGROUND_NICENESS).min(19));
        assert_eq!(
            rustix::process::getpriority_process(None).expect("priority"),
            spawner,
            "the spawner keeps its priority"
        );
    }
}
