//! Matrix: mentions and `!commands` in rooms, answered in a thread as `m.notice`, in encrypted rooms too.
//!
//! The settings ([`config`]) are always compiled, so a build without the `matrix` feature refuses a configuration
//! that enables Matrix by name; the bot itself (`bot`) and its rendering ([`render`]) come with the feature.

#[cfg(feature = "matrix")]
mod bot;
pub mod config;
#[cfg(feature = "matrix")]
pub mod render;

#[cfg(feature = "matrix")]
pub use bot::{Matrix, StartError, resolve_aliases};
pub use config::{MatrixConfig, RawMatrix};
