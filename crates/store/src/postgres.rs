//! PostgreSQL implementation of [`crate::EntityStore`].
