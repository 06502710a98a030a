// The ceiling of the benchmark setup: a Worker that does nothing of ours, under the same
// wrangler dev, origin and load. `POST /collect` gets `202 {}` once its body is read (a collect
// answer without any work); anything else is forwarded to CAPI_ORIGIN (one subrequest, like
// proxy mode without the conversion).
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    if (url.pathname === '/collect') {
      await req.arrayBuffer();
      return new Response('{"status":"accepted"}', { status: 202, headers: { 'content-type': 'application/json' } });
    }
    return fetch(new Request(env.CAPI_ORIGIN + url.pathname + url.search, req));
  },
};
