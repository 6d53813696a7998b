//! A small blocking HTTP client, run off the async threads.

use serde_json::Value;

pub struct Http {
    agent: ureq::Agent,
    base: String,
}

/// A response: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Http {
    pub fn new(base: String) -> Http {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        Http { agent: ureq::Agent::new_with_config(config), base }
    }

    /// `method path` with an optional bearer token and raw body.
    pub async fn call(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<String>) -> Reply {
        let (agent, url) = (self.agent.clone(), format!("{}{path}", self.base));
        let (method, bearer) = (method.to_owned(), bearer.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            let auth = bearer.map(|b| format!("Bearer {b}"));
            let result = match (method.as_str(), body) {
                ("GET", _) => {
                    let mut r = agent.get(&url);
                    if let Some(a) = &auth {
                        r = r.header("Authorization", a);
                    }
                    r.call()
                }
                (m, body) => {
                    let mut r = match m {
                        "POST" => agent.post(&url),
                        "PUT" => agent.put(&url),
                        other => panic!("method {other}"),
                    };
                    if let Some(a) = &auth {
                        r = r.header("Authorization", a);
                    }
                    r.header("Content-Type", "application/json").send(body.unwrap_or_default())
                }
            };
            let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
        })
        .await
        .expect("http task")
    }
}
