// The core configuration that every benchmarked Worker gets (bench.mjs, profile.mjs): one
// checkout rule on the origin's /bench/checkout, a seed destination on the Worker's own sink.
export function benchConfig(sinkUrl) {
  return {
    destination: { format: 'seed', url: `${sinkUrl}/v1/conversions`, allow_http_loopback: true, timeout_ms: 5000, advertiser_id: 4242, data_source_key: 'bench' },
    auth: { bearer_token_env: 'CAPI_TOKEN' },
    identifiers: { default_calling_code: '1', phone_as: 'HashedPhone' },
    consent: { honor_gpc: true },
    limits: { max_body_bytes: 65536, dedup_window_ms: 600000, dedup_capacity: 100000 },
    retry: { max_attempts: 3, max_age_ms: 60000, base_backoff_ms: 500, max_backoff_ms: 2000 },
    rules: [
      {
        name: 'checkout', conversion_type: 'Purchase',
        match: { method: 'POST', path: '/bench/checkout', status: [200], content_type: 'application/json' },
        extract: { order_id: 'response:/order/id', value: 'response:/order/total', currency: 'response:/order/currency', email: 'response:/customer/email', guid: 'cookie:capi_guid', first_party_id: 'response:/customer/id' },
      },
    ],
  };
}
