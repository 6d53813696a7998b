//! A small blocking HTTP client, run off the async threads.

use std::io::Cursor;

use serde_json::Value;
use ureq::http::Request;
use ureq::SendBody;

pub struct Http {
    agent: ureq::Agent,
    base: String,
}

/// A response: status, headers and JSON body (`Null` when empty or not
/// JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What a request carries.
pub enum Body {
    None,
    /// Sent with its Content-Length.
    Text(String),
    /// Sent with `Transfer-Encoding: chunked`, its length unannounced.
    Chunked(Vec<u8>),
}

impl Http {
    pub fn new(base: String) -> Http {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        Http { agent: ureq::Agent::new_with_config(config), base }
    }

    /// `method path` with an optional bearer token and raw JSON body.
    pub async fn call(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<String>) -> Reply {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let body = match (method, body) {
            ("GET", _) => Body::None,
            (_, body) => {
                headers.push(("Content-Type", "application/json"));
                Body::Text(body.unwrap_or_default())
            }
        };
        self.send(method, path, &headers, body).await
    }

    /// Any method, headers and body; nothing added.
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Body) -> Reply {
        let (agent, url) = (self.agent.clone(), format!("{}{path}", self.base));
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let method = method.to_owned();
        tokio::task::spawn_blocking(move || {
            let result = match body {
                Body::None => agent.run(request.body(()).expect("request")),
                Body::Text(text) => agent.run(request.body(text).expect("request")),
                Body::Chunked(bytes) => {
                    agent.run(request.body(SendBody::from_owned_reader(Cursor::new(bytes))).expect("request"))
                }
            };
            let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text, headers }
        })
        .await
        .expect("http task")
    }
}
