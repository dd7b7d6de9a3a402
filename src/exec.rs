//! The one executor for bounded parallel work: `workers` threads drain a
//! shared queue, each worker deciding how much to take at a time (sync
//! takes a batch, an S3 upload one package). What the workers return is
//! collected; a panic in a worker is a bug and propagates.

use std::collections::VecDeque;
use std::sync::Mutex;

/// The work still waiting, shared by the workers of [`drain`].
pub struct Queue<T> {
    items: Mutex<VecDeque<T>>,
}

impl<T> Queue<T> {
    /// The next item, or `None` when the queue is empty.
    pub fn next(&self) -> Option<T> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// Runs `worker` on at most `workers` threads (at least one, never more than
/// there are items) over a queue of `items`, and returns everything the
/// workers returned, in no particular order.
pub fn drain<T, R, W>(items: impl IntoIterator<Item = T>, workers: usize, worker: W) -> Vec<R>
where
    T: Send,
    R: Send,
    W: Fn(&Queue<T>) -> Vec<R> + Sync,
{
    let queue = Queue {
        items: Mutex::new(items.into_iter().collect()),
    };
    let threads = workers
        .min(queue.items.lock().map_or(1, |q| q.len()))
        .max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| worker(&queue)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_once_with_bounded_threads() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut out = drain(0..100, 4, |q| {
            let mut done = Vec::new();
            while let Some(i) = q.next() {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_micros(200));
                running.fetch_sub(1, Ordering::SeqCst);
                done.push(i * 2);
            }
            done
        });
        out.sort();
        assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 4);
        assert!(drain(Vec::<u8>::new(), 8, |q| q.next().into_iter().collect()).is_empty());
    }
}
