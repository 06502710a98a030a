//! Benchmark only (`bench/envoy/bench.py --parts floor`): the least any proxy-wasm filter must
//! do to turn a checkout into a conversion, and nothing more. Per exchange it reads what the
//! capi filter reads with the default configuration (request headers in one call, the peer
//! address, response headers in one call, each response body chunk) and throws it away: no
//! extraction, no hashing, no delivery, no metrics.
//!
//! Its throughput next to the plain listener is the ceiling for any design that reads these
//! inputs on Envoy's worker thread through the proxy-wasm ABI in V8.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot) });
}}

struct FloorRoot;

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor { bytes: 0 }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    /// Keeps the reads from being optimized away.
    bytes: usize,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.bytes += self.get_http_request_headers().len();
        self.bytes += self
            .get_property(vec!["source", "address"])
            .map_or(0, |a| a.len());
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.bytes += self.get_http_response_headers().len();
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _: bool) -> Action {
        if body_size > 0 {
            self.bytes += self
                .get_http_response_body(0, body_size)
                .map_or(0, |b| b.len());
        }
        Action::Continue
    }
}
