// The Worker's entry module. build.sh has worker-build bundle this file in place of its own
// shim (cf-worker/esbuild.sh swaps it in), with everything else of worker-build's pipeline kept:
// wasm-bindgen with --experimental-reset-state-function and --force-enable-abort-handler,
// wasm-opt, esbuild, the wasm import fix.
//
// Why: worker-build's shim exports a Proxy around a `WorkerEntrypoint` class, so that every
// request constructs an instance through a Proxy trap, wraps it in a second Proxy and each method
// looked up in a third (its panic recovery, written for Durable Object classes that keep state
// across requests). `wrangler dev` then subclasses a class entry for its middleware. This
// Worker has no such class: a plain object with `fetch` and `queue` is what Cloudflare's own
// JavaScript Workers export, and costs one call per request.
//
// Panic recovery is kept, in the two layers worker-build has:
// - wasm-bindgen's own: a trap marks the instance terminated and calls the abort handler that
//   workers-rs registers, which schedules a reset; the generated glue then makes a fresh
//   instance on the next call into wasm.
// - the shim's: workers-rs's panic hook sets `criticalError` in the shared init state; the next
//   event resets the instance before calling in (the check below, as worker-build does it).
// Left out: `Error.stackTraceLimit = 100` (a longer stack on every Error the isolate creates,
// for debugging only).
import * as exports from "./index.js";

const initState = exports.__worker_init_state();

function checkReinitialize() {
  if (initState.criticalError) {
    console.log('{"component":"capi-worker","level":"error","msg":"wasm_reinitialized"}');
    exports.__wbg_reset_state();
    initState.criticalError = false;
    initState.instanceId++;
  }
}

function handleMaybeCritical(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    console.error("Critical", e);
    initState.criticalError = true;
  }
}

addEventListener("error", (e) => {
  handleMaybeCritical(e.error);
});

export default {
  fetch(request, env, ctx) {
    checkReinitialize();
    try {
      return exports.fetch(request, env, ctx);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  },

  async queue(batch, env, ctx) {
    checkReinitialize();
    try {
      return await exports.queue(batch, env, ctx);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  },
};
