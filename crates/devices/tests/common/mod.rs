//! A fresh store for a test: a temporary SQLite file, or (`pg`) PostgreSQL at MISTO_TEST_DATABASE_URL (default
//! `postgres://postgres@127.0.0.1:5432/test`) in a schema of its own.

use std::sync::Arc;

pub async fn store(pg: bool) -> (Arc<dyn misto_store::EntityStore>, Option<tempfile::TempDir>) {
    if pg {
        let url = std::env::var("MISTO_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let s = misto_store::postgres::PgStore::connect_isolated(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} is needed for these tests: {e}"));
        (Arc::new(s), None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        let s = misto_store::sqlite::SqliteStore::open(dir.path().join("d.db")).unwrap();
        (Arc::new(s), Some(dir))
    }
}
