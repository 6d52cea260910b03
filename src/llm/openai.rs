//! The OpenAI-compatible `/v1/chat/completions` (vLLM, llama.cpp, LocalAI): server-sent events, `data: {json}` per
//! chunk, the usage in a last chunk when `stream_options.include_usage` is honoured, then `data: [DONE]`.

use std::pin::Pin;

use serde_json::{Value, json};

use super::{
    ChatApi, Chunk, ChunkStream, LlmConfig, LlmError, Message, Usage, chunk_stream, request_error, status_error,
};

pub struct OpenAi {
    pub http: reqwest::Client,
}

fn endpoint(config: &LlmConfig, path: &str) -> String {
    let base = config.url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/{path}")
}

impl ChatApi for OpenAi {
    fn chat<'a>(&'a self, messages: &'a [Message], config: &'a LlmConfig) -> ChunkStream<'a> {
        let url = endpoint(config, "chat/completions");
        let body = json!({
            "model": config.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": config.temperature,
            "max_tokens": config.answer_tokens,
        });
        let mut events = Events::default();
        chunk_stream(self.http.post(&url).json(&body), url, move |line| events.parse(line))
    }

    fn models<'a>(
        &'a self,
        config: &'a LlmConfig,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, LlmError>> + Send + 'a>> {
        Box::pin(async move {
            let url = endpoint(config, "models");
            let response = self.http.get(&url).send().await.map_err(|e| request_error(&url, e))?;
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            let models: Value = response.json().await.map_err(|e| LlmError::Decode(e.to_string()))?;
            Ok(models["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect())
        })
    }
}

/// The SSE parser's state: the finish reason arrives before the usage.
#[derive(Default)]
pub struct Events {
    finish: Option<String>,
    done: bool,
}

impl Events {
    pub fn parse(&mut self, line: &str) -> Vec<Result<Chunk, LlmError>> {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else { return Vec::new() }; // comments, event names
        if self.done {
            return Vec::new();
        }
        if data == "[DONE]" {
            self.done = true;
            return vec![Ok(Chunk::Done { usage: Usage::default(), finish: self.finish.take() })];
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => return vec![Err(LlmError::Decode(format!("{e} in {data:?}")))],
        };
        if let Some(error) = value.get("error") {
            let message = error["message"].as_str().map_or_else(|| error.to_string(), str::to_string);
            return vec![Err(LlmError::Stream(message))];
        }
        let mut chunks = Vec::new();
        let choice = &value["choices"][0];
        if let Some(token) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
            chunks.push(Ok(Chunk::Token(token.to_string())));
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.finish = Some(finish.to_string());
        }
        if value["usage"].is_object() {
            let count = |field: &str| value["usage"][field].as_u64().map(|n| n as u32);
            self.done = true;
            let usage = Usage { prompt_tokens: count("prompt_tokens"), completion_tokens: count("completion_tokens") };
            chunks.push(Ok(Chunk::Done { usage, finish: self.finish.take() }));
        }
        chunks
    }
}
