//! The compact text forms in which the Worker's JavaScript helpers (glue, wasm32 only) hand
//! request and response heads across the JS↔wasm boundary: one string per call rather than one
//! crossing, and one UTF-16↔UTF-8 copy, per header. Header names and values never hold a line
//! feed (the Fetch API's `Headers` refuses CR, LF and NUL), so `\n` separates the fields.

/// Header pairs, names in lower case, in the order the runtime iterates them.
pub type Headers = Vec<(String, String)>;

/// `name\nvalue\n...`: every pair in turn (a trailing `\n` or none).
pub fn parse_headers(block: &str) -> Headers {
    let mut out = Vec::with_capacity(16);
    let mut fields = block.split('\n');
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        out.push((name.to_ascii_lowercase(), value.to_owned()));
    }
    out
}

/// The inverse of [`parse_headers`], for the headers of a response the Worker makes.
pub fn pack_headers(headers: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in headers {
        out.push_str(k);
        out.push('\n');
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// A request's method, URL and some or all of its headers: `method\nurl\n` then the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub url: String,
    pub headers: Headers,
}

impl RequestHead {
    pub fn parse(text: &str) -> Self {
        let mut parts = text.splitn(3, '\n');
        let method = parts.next().unwrap_or_default().to_owned();
        let url = parts.next().unwrap_or_default().to_owned();
        let headers = parse_headers(parts.next().unwrap_or_default());
        Self {
            method,
            url,
            headers,
        }
    }
}

/// A response's status and headers: `status\n` then the headers.
pub fn parse_response_head(text: &str) -> (u16, Headers) {
    let (status, rest) = text.split_once('\n').unwrap_or((text, ""));
    (status.trim().parse().unwrap_or(0), parse_headers(rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pairs(h: &[(&str, &str)]) -> Headers {
        h.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn headers_round_trip_with_empty_values_and_repeats() {
        let h = vec![
            ("set-cookie", "a=1; Path=/".to_owned()),
            ("set-cookie", "b=2".to_owned()),
            ("x-empty", String::new()),
            ("vary", "Origin".to_owned()),
        ];
        let block = pack_headers(&h);
        assert_eq!(
            parse_headers(&block),
            pairs(&[
                ("set-cookie", "a=1; Path=/"),
                ("set-cookie", "b=2"),
                ("x-empty", ""),
                ("vary", "Origin")
            ])
        );
        assert_eq!(parse_headers(""), Headers::new());
        // Without the trailing line feed, and with a name in capitals.
        assert_eq!(
            parse_headers("Content-Type\napplication/json"),
            pairs(&[("content-type", "application/json")])
        );
        // A dangling name without a value is not a header.
        assert_eq!(parse_headers("a\n1\nb"), pairs(&[("a", "1")]));
    }

    #[test]
    fn request_head_splits_method_url_and_headers() {
        let h = RequestHead::parse(
            "GET\nhttps://shop.example/p?q=1\ncookie\ncapi_guid=x; a=b\naccept\ntext/html\n",
        );
        assert_eq!(h.method, "GET");
        assert_eq!(h.url, "https://shop.example/p?q=1");
        assert_eq!(
            h.headers,
            pairs(&[("cookie", "capi_guid=x; a=b"), ("accept", "text/html")])
        );
        let bare = RequestHead::parse("POST\nhttps://x/collect\n");
        assert_eq!((bare.method.as_str(), bare.headers.len()), ("POST", 0));
    }

    #[test]
    fn response_head_reads_status_and_headers() {
        assert_eq!(
            parse_response_head("201\ncontent-type\napplication/json\n"),
            (201, pairs(&[("content-type", "application/json")]))
        );
        assert_eq!(parse_response_head("204\n"), (204, Headers::new()));
        assert_eq!(parse_response_head("x"), (0, Headers::new()));
    }
}
