//! What the chat front-ends (Slack, Matrix) share: how a message is routed to an intent, and bounded memories.

pub mod matrix_text;
pub mod route;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// A bounded set of recent keys with the time each was added; the oldest go first.
pub struct Recent<V> {
    entries: HashMap<String, (Instant, V)>,
    order: VecDeque<String>,
    capacity: usize,
}

impl<V> Recent<V> {
    pub fn new(capacity: usize) -> Recent<V> {
        Recent { entries: HashMap::new(), order: VecDeque::new(), capacity }
    }

    /// Adds `key`; false when it was already there.
    pub fn insert(&mut self, key: String, value: V) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, (Instant::now(), value));
        true
    }

    /// Sets `key` to `value`, as the newest entry.
    pub fn put(&mut self, key: String, value: V) {
        if self.entries.remove(&key).is_some() {
            self.order.retain(|k| *k != key);
        }
        self.insert(key, value);
    }

    pub fn get(&self, key: &str) -> Option<&(Instant, V)> {
        self.entries.get(key)
    }

    /// The keys added within `age`, at most `most` of them, the newest first.
    pub fn newer_than(&self, age: std::time::Duration, most: usize) -> Vec<&str> {
        let added = |key: &String| self.entries.get(key).map(|(at, _)| at.elapsed());
        self.order
            .iter()
            .rev()
            .take_while(|k| added(k).is_some_and(|a| a < age))
            .take(most)
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_forgets_the_oldest_first() {
        let mut recent = Recent::new(2);
        assert!(recent.insert("a".into(), 1));
        assert!(!recent.insert("a".into(), 2), "already there");
        assert!(recent.insert("b".into(), 3));
        recent.put("a".into(), 4);
        assert_eq!(recent.newer_than(std::time::Duration::from_secs(60), 5), ["a", "b"]);
        assert_eq!(recent.newer_than(std::time::Duration::from_secs(60), 1), ["a"]);
        assert!(recent.newer_than(std::time::Duration::ZERO, 5).is_empty());
        assert!(recent.insert("c".into(), 5));
        assert!(recent.get("b").is_none(), "b was the oldest");
        assert_eq!(recent.get("a").map(|(_, v)| *v), Some(4));
        assert!(recent.get("c").is_some());
    }
}
