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

/// Entries addressed by `(index, generation)`; a freed index is reused with the next
/// generation, so an old key finds nothing.
struct Slab<T> {
    entries: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, value: T) -> (u32, u32) {
        if let Some(index) = self.free.pop()
            && let Some((generation, slot)) = self.entries.get_mut(index as usize)
        {
            *slot = Some(value);
            return (index, *generation);
        }
        self.entries.push((0, Some(value)));
        ((self.entries.len() - 1) as u32, 0)
    }

    fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut T> {
        match self.entries.get_mut(index as usize) {
            Some((g, slot)) if *g == generation => slot.as_mut(),
            _ => None,
        }
    }

    fn remove(&mut self, index: u32, generation: u32) -> Option<T> {
        let (g, slot) = self.entries.get_mut(index as usize)?;
        if *g != generation {
            return None;
        }
        let value = slot.take()?;
        *g = g.wrapping_add(1);
        self.free.push(index);
        Some(value)
    }

    fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

struct TaskSlot {
    /// `None` while the task is being polled.
    future: Option<Task>,
    waker: Waker,
    /// Woken while it was being polled: poll again (from a microtask).
    woken: bool,
}

enum WaitState {
    Pending(Option<Waker>),
    Done(Result<JsValue, JsValue>),
}

thread_local! {
    static TASKS: RefCell<Slab<TaskSlot>> = const { RefCell::new(Slab::new()) };
    static WAITS: RefCell<Slab<WaitState>> = const { RefCell::new(Slab::new()) };
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
        let state = w.get_mut(index, generation)?;
        let WaitState::Pending(waker) = state else {
            return None;
        };
        let waker = waker.take();
        *state = WaitState::Done(if kind == REJECTED {
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
            let pending = WaitState::Pending(Some(cx.waker().clone()));
            let (index, generation) = WAITS.with(|w| w.borrow_mut().insert(pending));
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
            match w.get_mut(index, generation)? {
                WaitState::Pending(waker) => {
                    if !waker.as_ref().is_some_and(|k| k.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    None
                }
                WaitState::Done(_) => match w.remove(index, generation) {
                    Some(WaitState::Done(r)) => Some(r),
                    _ => None,
                },
            }
        });
        match done {
            Some(r) => {
                self.key = None;
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // Dropped before its value was taken: free the slot; the late callback finds another
        // generation there. The state is dropped outside the borrow.
        if let Some((index, generation)) = self.key {
            drop(WAITS.with(|w| w.borrow_mut().remove(index, generation)));
        }
    }
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
    let run_now = TASKS.with(|t| match t.borrow_mut().get_mut(index, generation) {
        Some(slot) if slot.future.is_some() => true,
        Some(slot) => {
            slot.woken = true;
            false
        }
        None => false,
    });
    if run_now {
        run(index, generation);
    }
}

/// What the executor holds: `(tasks spawned, tasks not finished, promises awaited and not yet
/// taken)`. With no request in flight the last two are 0; anything else is a leak.
pub fn usage() -> (u64, usize, usize) {
    (
        SPAWNED.with(Cell::get),
        TASKS.with(|t| t.borrow().len()),
        WAITS.with(|w| w.borrow().len()),
    )
}

/// Runs a future to completion on this executor; its first poll happens now.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    install();
    SPAWNED.with(|n| n.set(n.get() + 1));
    let future: Task = Box::pin(future);
    let (index, generation) = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        // The waker names the slot, so it is made once the slot is known.
        let (index, generation) = t.insert(TaskSlot {
            future: Some(future),
            waker: Waker::noop().clone(),
            woken: false,
        });
        if let Some(slot) = t.get_mut(index, generation) {
            slot.waker = Waker::from(Arc::new(TaskWaker { index, generation }));
        }
        (index, generation)
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
        let slot = t.get_mut(index, generation)?;
        let future = slot.future.take()?;
        slot.woken = false;
        Some((future, slot.waker.clone()))
    });
    let Some((mut future, waker)) = taken else {
        return;
    };
    if future
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready()
    {
        // Dropped outside the borrow: a future's drop may touch the executor.
        let slot = TASKS.with(|t| t.borrow_mut().remove(index, generation));
        drop((future, slot));
        return;
    }
    let back = TASKS.with(|t| match t.borrow_mut().get_mut(index, generation) {
        Some(slot) => {
            slot.future = Some(future);
            Ok(std::mem::take(&mut slot.woken))
        }
        None => Err(future),
    });
    match back {
        // Woken during its own poll: again from a microtask, so that a future that keeps waking
        // itself cannot hold the isolate in a loop.
        Ok(true) => js::repoll(index, generation),
        Ok(false) => {}
        Err(future) => drop(future),
    }
}
