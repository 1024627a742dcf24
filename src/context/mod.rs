//! The shared conversation memory: one typed, versioned document per call that the bot, the
//! agent and baton itself read and write. Nobody pushes context to anybody: writers apply
//! [`Change`]s, each becomes an [`Event`] with a version, an author and a time, and readers
//! subscribe from any version.
//!
//! [`document`] is the document and its JSON shape, [`change`] the typed writes and how they
//! apply, [`store`] the store trait and the in-memory store.

pub mod archive;
pub mod change;
pub mod document;
pub mod store;
pub mod summary;

pub use change::{Author, Change, Event};
pub use document::Context;
pub use store::{ContextStore, MemoryStore, StoreError};
