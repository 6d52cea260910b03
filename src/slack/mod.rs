//! Slack groundwork: what every Slack entry point needs before it reads a request or writes a message. Request
//! signatures (checked before anything is parsed), routing of slash commands and mentions, and mrkdwn escaping. The
//! HTTP and Socket Mode front-end that uses them is not built yet.

pub mod mrkdwn;
pub mod route;
pub mod signature;
