//! The dedicated rayon pool used by batch calls.
//!
//! Its size is `set_num_threads(n)`, else `GRPO_PLUG_NUM_THREADS`, else the
//! number of available cores. The pool is built lazily on first use and
//! rebuilt after the size changes or after `fork()` (a forked child has no
//! pool threads; the parent's pool is leaked there rather than dropped).

use std::sync::{Arc, Mutex, MutexGuard};

use rayon::{ThreadPool, ThreadPoolBuilder};

struct State {
    /// Requested size; 0 means the default.
    threads: usize,
    /// The pool and the process id that built it.
    pool: Option<(Arc<ThreadPool>, u32)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    threads: 0,
    pool: None,
});

fn lock() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn default_threads() -> usize {
    std::env::var("GRPO_PLUG_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn discard(state: &mut State) {
    if let Some((pool, pid)) = state.pool.take() {
        if pid != std::process::id() {
            // Inherited through fork: its threads do not exist here.
            std::mem::forget(pool);
        }
    }
}

/// Set the size of the pool (`0` restores the default).
pub fn set_num_threads(n: usize) {
    let mut st = lock();
    st.threads = n;
    discard(&mut st);
}

/// The size batch calls will use.
pub fn get_num_threads() -> usize {
    let st = lock();
    if st.threads == 0 {
        default_threads()
    } else {
        st.threads
    }
}

/// The current pool, built if needed.
pub fn current() -> Result<Arc<ThreadPool>, String> {
    let mut st = lock();
    let pid = std::process::id();
    if let Some((pool, owner)) = &st.pool {
        if *owner == pid {
            return Ok(Arc::clone(pool));
        }
    }
    discard(&mut st);
    let n = if st.threads == 0 {
        default_threads()
    } else {
        st.threads
    };
    let pool = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("grpo-core-{i}"))
        .build()
        .map_err(|e| format!("could not start {n} worker threads: {e}"))?;
    let pool = Arc::new(pool);
    st.pool = Some((Arc::clone(&pool), pid));
    Ok(pool)
}
