//! The NGSI-LD information model as misto holds it: `@context` handling, entity parsing and validation into the
//! stored form, update semantics, and rendering in the NGSI-LD representations. No I/O.

pub mod compat;
pub mod context;
pub mod entity;
pub mod error;
pub mod expiry;
pub mod linked;
pub mod projection;
pub mod render;
pub mod update;
pub mod validate;

pub use context::Context;
pub use entity::{Entity, Parser};
pub use error::{ErrorKind, NgsiError, Result};
pub use render::{Format, RenderOptions};
