//! A question as kubechat answers it, whichever front-end it came from.

/// What to read: a namespace, optionally narrowed to one object (`pod/x`, `deployment/web`, …).
#[derive(Debug, Clone)]
pub struct Scope {
    pub namespace: String,
    pub object: Option<(String, String)>,
}
