//! Benchmark only (`bench/envoy/bench.py --parts floor`, `bench/envoy/hostcalls.py`): the least
//! any proxy-wasm filter must do to turn a checkout into a conversion, and nothing more. Per
//! exchange it reads what the capi filter reads with the default configuration (request headers
//! in one call, the peer address, response headers in one call, each response body chunk) and
//! throws it away: no extraction, no hashing, no delivery, no metrics.
//!
//! Its throughput next to the plain listener is the ceiling for any design that reads these
//! inputs on Envoy's worker thread through the proxy-wasm ABI in V8.
//!
//! To price single host calls, the plugin configuration may ask for `n` extra calls of one
//! kind at the end of each response: `{"extra": "time"|"metric"|"shared_get"|"shared_set"|
//! "property"|"headers", "n": 10}`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(FloorRoot { extra: Extra::None, n: 0, metric: 0 })
    });
}}

#[derive(Clone, Copy)]
enum Extra {
    None,
    Time,
    Metric,
    SharedGet,
    SharedSet,
    Property,
    Headers,
}

struct FloorRoot {
    extra: Extra,
    n: u32,
    metric: u32,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        // A benchmark knob, not a user-facing configuration: a substring test is enough.
        let kinds = [
            ("\"time\"", Extra::Time),
            ("\"metric\"", Extra::Metric),
            ("\"shared_get\"", Extra::SharedGet),
            ("\"shared_set\"", Extra::SharedSet),
            ("\"property\"", Extra::Property),
            ("\"headers\"", Extra::Headers),
        ];
        self.extra = kinds
            .iter()
            .find(|(k, _)| config.contains(k))
            .map_or(Extra::None, |(_, e)| *e);
        self.n = config
            .split("\"n\":")
            .nth(1)
            .and_then(|s| s.trim().trim_end_matches('}').trim().parse().ok())
            .unwrap_or(0);
        self.metric = hostcalls::define_metric(MetricType::Counter, "floor.extra").unwrap_or(0);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            bytes: 0,
            extra: self.extra,
            n: self.n,
            metric: self.metric,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    /// Keeps the reads from being optimized away.
    bytes: usize,
    extra: Extra,
    n: u32,
    metric: u32,
}

impl Floor {
    fn extra_calls(&mut self) {
        for i in 0..self.n {
            self.bytes += match self.extra {
                Extra::None => 0,
                Extra::Time => usize::from(hostcalls::get_current_time().is_ok()),
                Extra::Metric => usize::from(hostcalls::increment_metric(self.metric, 1).is_ok()),
                Extra::SharedGet => hostcalls::get_shared_data("floor.key")
                    .ok()
                    .and_then(|(v, _)| v)
                    .map_or(0, |v| v.len()),
                Extra::SharedSet => {
                    let key = ["floor.", &i.to_string()].concat();
                    usize::from(
                        hostcalls::set_shared_data(&key, Some(b"0123456789abcdef"), None).is_ok(),
                    )
                }
                Extra::Property => self
                    .get_property(vec!["source", "address"])
                    .map_or(0, |a| a.len()),
                Extra::Headers => {
                    hostcalls::get_map(MapType::HttpResponseHeaders).map_or(0, |m| m.len())
                }
            };
        }
    }
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

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > 0 {
            self.bytes += self
                .get_http_response_body(0, body_size)
                .map_or(0, |b| b.len());
        }
        if end_of_stream {
            self.extra_calls();
        }
        Action::Continue
    }
}
