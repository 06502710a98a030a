//! The Worker's own executor for its futures, in place of wasm-bindgen-futures on the request
//! path (`fetch` and its `waitUntil` work; the queue handler stays on workers-rs).
//!
//! Why: wasm-bindgen-futures pays, for every awaited promise, two Rust closures turned into JS
//! functions (each registered with a FinalizationRegistry and later destroyed through two more
//! crossings), a shared `Rc<RefCell<..>>`, and a `queueMicrotask` hop before the task is polled
//! again; each spawned task is one more microtask before its first poll. A proxied checkout
//! awaits six promises in two tasks. Here a promise is awaited by two plain JS arrow functions
//! ([`js::await_promise`]) that call one closure created once per instance ([`resume`]), which
//! stores the value in a slot and polls the waiting task at once; a task's first poll runs when
//! it is spawned.
//!
//! [`Wait`] works under any executor: its waker is whatever polled it (under workers-rs's queue
//! handler, wasm-bindgen-futures' own), so the code it serves is shared by both handlers.
//!
//! Slots are reused; a generation number in every key makes a late callback for a slot that was
//! freed and reused (a dropped [`Wait`], a task that finished) a no-op.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::js;

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// What [`resume`] is called for, its first argument (the numbers js.rs passes): 0 a promise
/// resolved, 1 it rejected, 2 a task is to be polled again.
const REJECTED: u32 = 1;
const REPOLL: u32 = 2;

struct TaskSlot {
    generation: u32,
    /// `None` while the slot is free, and while the task is being polled.
    future: Option<Task>,
    waker: Option<Waker>,
    running: bool,
    /// Woken while it was being polled: poll again (from a microtask).
    woken: bool,
}

enum WaitState {
    Free,
    Pending(Option<Waker>),
    Done(Result<JsValue, JsValue>),
}

struct WaitSlot {
    generation: u32,
    state: WaitState,
}

thread_local! {
    static TASKS: RefCell<Vec<TaskSlot>> = const { RefCell::new(Vec::new()) };
    static FREE_TASKS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    static WAITS: RefCell<Vec<WaitSlot>> = const { RefCell::new(Vec::new()) };
    static FREE_WAITS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Tasks spawned since the instance started (for `/_capi/stats`).
    static SPAWNED: Cell<u64> = const { Cell::new(0) };
    /// Whether [`resume`] is installed in the JS helpers for this instance (a fresh instance after
    /// a trap starts with `false` and installs its own).
    static INSTALLED: Cell<bool> = const { Cell::new(false) };
}

fn install() {
    if INSTALLED.with(|i| i.replace(true)) {
        return;
    }
    let f = Closure::<dyn Fn(u32, u32, u32, JsValue)>::new(resume);
    js::install_resume(f.as_ref().unchecked_ref());
    // One closure for the instance's lifetime.
    f.forget();
}

/// Called from JS: a promise that a [`Wait`] awaits has settled, or a task asks to be polled
/// again.
fn resume(kind: u32, index: u32, generation: u32, value: JsValue) {
    if kind == REPOLL {
        run(index, generation);
        return;
    }
    let waker = WAITS.with(|w| {
        let mut w = w.borrow_mut();
        let slot = w.get_mut(index as usize)?;
        if slot.generation != generation {
            return None;
        }
        let WaitState::Pending(waker) = &mut slot.state else {
            return None;
        };
        let waker = waker.take();
        slot.state = WaitState::Done(if kind == REJECTED {
            Err(value)
        } else {
            Ok(value)
        });
        waker
    });
    if let Some(w) = waker {
        w.wake();
    }
}

/// Awaits a promise: `Ok` with its value, `Err` with its rejection.
pub fn wait(promise: js_sys::Promise) -> Wait {
    Wait {
        promise: Some(promise),
        key: None,
    }
}

pub struct Wait {
    promise: Option<js_sys::Promise>,
    key: Option<(u32, u32)>,
}

impl Future for Wait {
    type Output = Result<JsValue, JsValue>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(promise) = self.promise.take() {
            install();
            let (index, generation) = WAITS.with(|w| {
                let mut w = w.borrow_mut();
                let state = WaitState::Pending(Some(cx.waker().clone()));
                match FREE_WAITS.with(|f| f.borrow_mut().pop()) {
                    Some(i) => match w.get_mut(i as usize) {
                        Some(slot) => {
                            slot.state = state;
                            (i, slot.generation)
                        }
                        None => push_wait(&mut w, state),
                    },
                    None => push_wait(&mut w, state),
                }
            });
            self.key = Some((index, generation));
            js::await_promise(&promise, index, generation);
            return Poll::Pending;
        }
        let Some((index, generation)) = self.key else {
            // Polled again after it completed.
            return Poll::Ready(Err(JsValue::UNDEFINED));
        };
        let done = WAITS.with(|w| {
            let mut w = w.borrow_mut();
            let slot = w.get_mut(index as usize)?;
            if slot.generation != generation {
                return None;
            }
            match &mut slot.state {
                WaitState::Pending(waker) => {
                    if !waker.as_ref().is_some_and(|k| k.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    None
                }
                WaitState::Done(_) => match std::mem::replace(&mut slot.state, WaitState::Free) {
                    WaitState::Done(r) => Some(r),
                    _ => None,
                },
                WaitState::Free => None,
            }
        });
        match done {
            Some(r) => {
                release_wait(index);
                self.key = None;
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // Dropped before its promise settled: free the slot; the late callback finds another
        // generation there.
        if let Some((index, generation)) = self.key {
            let owned = WAITS.with(|w| {
                let mut w = w.borrow_mut();
                match w.get_mut(index as usize) {
                    Some(slot) if slot.generation == generation => {
                        slot.state = WaitState::Free;
                        true
                    }
                    _ => false,
                }
            });
            if owned {
                release_wait(index);
            }
        }
    }
}

fn push_wait(w: &mut Vec<WaitSlot>, state: WaitState) -> (u32, u32) {
    w.push(WaitSlot {
        generation: 0,
        state,
    });
    ((w.len() - 1) as u32, 0)
}

fn release_wait(index: u32) {
    WAITS.with(|w| {
        if let Some(slot) = w.borrow_mut().get_mut(index as usize) {
            slot.generation = slot.generation.wrapping_add(1);
            slot.state = WaitState::Free;
        }
    });
    FREE_WAITS.with(|f| f.borrow_mut().push(index));
}

struct TaskWaker {
    index: u32,
    generation: u32,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        wake_task(self.index, self.generation);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake_task(self.index, self.generation);
    }
}

fn wake_task(index: u32, generation: u32) {
    let run_now = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        match t.get_mut(index as usize) {
            Some(slot) if slot.generation == generation && slot.future.is_some() => true,
            Some(slot) if slot.generation == generation && slot.running => {
                slot.woken = true;
                false
            }
            _ => false,
        }
    });
    if run_now {
        run(index, generation);
    }
}

/// What the executor holds: `(tasks spawned, tasks not finished, promises awaited and not yet
/// taken)`. With no request in flight the last two are 0; anything else is a leak.
pub fn usage() -> (u64, usize, usize) {
    let live_tasks = TASKS.with(|t| {
        t.borrow()
            .iter()
            .filter(|s| s.future.is_some() || s.running)
            .count()
    });
    let live_waits = WAITS.with(|w| {
        w.borrow()
            .iter()
            .filter(|s| !matches!(s.state, WaitState::Free))
            .count()
    });
    (SPAWNED.with(Cell::get), live_tasks, live_waits)
}

/// Runs a future to completion on this executor; its first poll happens now.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    install();
    SPAWNED.with(|n| n.set(n.get() + 1));
    let future: Task = Box::pin(future);
    let reused = FREE_TASKS.with(|f| f.borrow_mut().pop());
    let (index, generation) = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(i) = reused
            && let Some(slot) = t.get_mut(i as usize)
        {
            slot.future = Some(future);
            slot.waker = Some(Waker::from(Arc::new(TaskWaker {
                index: i,
                generation: slot.generation,
            })));
            return (i, slot.generation);
        }
        let i = t.len() as u32;
        t.push(TaskSlot {
            generation: 0,
            future: Some(future),
            waker: Some(Waker::from(Arc::new(TaskWaker {
                index: i,
                generation: 0,
            }))),
            running: false,
            woken: false,
        });
        (i, 0)
    });
    run(index, generation);
}

/// A promise that resolves to the future's value, the future run on this executor.
pub fn spawn_promise(future: impl Future<Output = JsValue> + 'static) -> js_sys::Promise {
    let pair = js::deferred();
    let promise: js_sys::Promise = pair.get(0).unchecked_into();
    let resolve: js_sys::Function = pair.get(1).unchecked_into();
    spawn(async move {
        let value = future.await;
        let _ = resolve.call1(&JsValue::UNDEFINED, &value);
    });
    promise
}

fn run(index: u32, generation: u32) {
    let taken = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let slot = t.get_mut(index as usize)?;
        if slot.generation != generation {
            return None;
        }
        let future = slot.future.take()?;
        slot.running = true;
        slot.woken = false;
        Some((future, slot.waker.clone()?))
    });
    let Some((mut future, waker)) = taken else {
        return;
    };
    let ready = future
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready();
    let (repoll, finished) = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let Some(slot) = t.get_mut(index as usize) else {
            return (false, Some(future));
        };
        slot.running = false;
        if ready {
            slot.generation = slot.generation.wrapping_add(1);
            slot.waker = None;
            slot.woken = false;
            return (false, Some(future));
        }
        slot.future = Some(future);
        (std::mem::take(&mut slot.woken), None)
    });
    // Dropped outside the borrow: a future's drop may touch the executor.
    drop(finished);
    if ready {
        FREE_TASKS.with(|f| f.borrow_mut().push(index));
    } else if repoll {
        // Woken during its own poll: again from a microtask, so that a future that keeps waking
        // itself cannot hold the isolate in a loop.
        js::repoll(index, generation);
    }
}
