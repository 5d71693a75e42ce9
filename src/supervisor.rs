//! The supervisor of a running server's background tasks: each is named, started under one
//! cancellation token, and stopped in one order (the reverse of starting) within a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Named tasks under one stop signal. A task gets its own child token, watches it, cleans up
/// (an mDNS goodbye, a socket file removed) and returns.
#[derive(Debug, Default)]
pub struct Supervisor {
    stop: CancellationToken,
    tasks: Vec<Task>,
}

#[derive(Debug)]
struct Task {
    name: &'static str,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `task` as `name`; it is given the token that tells it to stop.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.child_token();
        let handle = tokio::spawn(task(stop.clone()));
        tracing::debug!(task = name, "task started");
        self.tasks.push(Task { name, stop, handle });
    }

    /// The names of the running tasks, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|t| t.name).collect()
    }

    /// Stops the task `name` (if running) ahead of the others, within `deadline`.
    pub async fn stop(&mut self, name: &str, deadline: Duration) {
        if let Some(i) = self.tasks.iter().position(|t| t.name == name) {
            let t = self.tasks.remove(i);
            stop_task(t, deadline).await;
        }
    }

    /// Stops every task, the last started first, each within `deadline` (then it is aborted).
    /// Returns the names in the order they stopped.
    pub async fn shutdown(mut self, deadline: Duration) -> Vec<&'static str> {
        let mut stopped = Vec::with_capacity(self.tasks.len());
        while let Some(t) = self.tasks.pop() {
            stopped.push(t.name);
            stop_task(t, deadline).await;
        }
        self.stop.cancel();
        stopped
    }
}

async fn stop_task(mut t: Task, deadline: Duration) {
    t.stop.cancel();
    if tokio::time::timeout(deadline, &mut t.handle).await.is_err() {
        tracing::warn!(task = t.name, "task did not stop in time; aborted");
        t.handle.abort();
    } else {
        tracing::debug!(task = t.name, "task stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::Supervisor;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[tokio::test]
    async fn tasks_stop_last_first_and_a_stuck_one_is_aborted() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut sup = Supervisor::new();
        for name in ["writer", "control", "mdns"] {
            let order = order.clone();
            sup.spawn(name, move |stop| async move {
                stop.cancelled().await;
                order.lock().unwrap().push(name);
            });
        }
        sup.spawn("stuck", |_stop| async {
            std::future::pending::<()>().await;
        });
        assert_eq!(sup.names(), ["writer", "control", "mdns", "stuck"]);
        sup.stop("control", Duration::from_millis(50)).await;
        assert_eq!(*order.lock().unwrap(), ["control"]);
        let stopped = sup.shutdown(Duration::from_millis(50)).await;
        assert_eq!(stopped, ["stuck", "mdns", "writer"]);
        assert_eq!(*order.lock().unwrap(), ["control", "mdns", "writer"]);
    }
}
