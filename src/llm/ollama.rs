//! Ollama's native `/api/chat`: NDJSON, one JSON object per line, the last with `done: true` and the token counts.
//! An `{"error": …}` line can arrive mid-stream under HTTP 200.

use std::pin::Pin;

use serde_json::{Value, json};

use super::{
    ChatApi, Chunk, ChunkStream, LlmConfig, LlmError, Message, Usage, chunk_stream, request_error, status_error,
};

pub struct Ollama {
    pub http: reqwest::Client,
}

impl ChatApi for Ollama {
    fn chat<'a>(&'a self, messages: &'a [Message], config: &'a LlmConfig) -> ChunkStream<'a> {
        let url = format!("{}/api/chat", config.url.trim_end_matches('/'));
        let body = json!({
            "model": config.model,
            "messages": messages,
            "stream": true,
            "keep_alive": config.keep_alive,
            "options": {"num_ctx": config.num_ctx, "temperature": config.temperature, "num_predict": config.answer_tokens},
        });
        chunk_stream(self.http.post(&url).json(&body), url, parse_line)
    }

    fn models<'a>(
        &'a self,
        config: &'a LlmConfig,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, LlmError>> + Send + 'a>> {
        Box::pin(async move {
            let url = format!("{}/api/tags", config.url.trim_end_matches('/'));
            let response = self.http.get(&url).send().await.map_err(|e| request_error(&url, e))?;
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            let tags: Value = response.json().await.map_err(|e| LlmError::Decode(e.to_string()))?;
            Ok(tags["models"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect())
        })
    }
}

/// One NDJSON line as chunks: a token, the final counts, or the error it carries.
pub fn parse_line(line: &str) -> Vec<Result<Chunk, LlmError>> {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return vec![Err(LlmError::Decode(format!("{e} in {line:?}")))],
    };
    if let Some(error) = value.get("error") {
        return vec![Err(LlmError::Stream(error.as_str().map_or_else(|| error.to_string(), str::to_string)))];
    }
    let mut chunks = Vec::new();
    if let Some(token) = value["message"]["content"].as_str().filter(|t| !t.is_empty()) {
        chunks.push(Ok(Chunk::Token(token.to_string())));
    }
    if value["done"] == true {
        let count = |field: &str| value[field].as_u64().map(|n| n as u32);
        chunks.push(Ok(Chunk::Done {
            usage: Usage { prompt_tokens: count("prompt_eval_count"), completion_tokens: count("eval_count") },
            finish: value["done_reason"].as_str().map(str::to_string),
        }));
    }
    chunks
}
