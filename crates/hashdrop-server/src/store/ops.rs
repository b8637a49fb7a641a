//! Operator tasks on the database itself.

use super::{sql, Backend, Db};

/// Writes a consistent snapshot of the SQLite database to `path` (`VACUUM INTO`).
pub async fn snapshot_sqlite(db: &Db, path: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        db.backend() == Backend::Sqlite,
        "backups are built for SQLite only (use pg_dump for PostgreSQL)"
    );
    // VACUUM INTO takes no parameters: the path is quoted as a SQL string literal.
    let statement = format!("VACUUM INTO '{}'", path.replace('\'', "''"));
    sql!(db.latest().await?.conn(), execute, &statement)?;
    Ok(())
}

/// PostgreSQL's `synchronous_commit` on the primary pool and on the relaxed pool
/// (download counters), in that order; `None` on SQLite. Lets an operator (and a
/// test) confirm that only the counters skip the WAL-flush wait.
pub async fn commit_modes(db: &Db) -> Result<Option<(String, String)>, sqlx::Error> {
    if db.backend() != Backend::Postgres {
        return Ok(None);
    }
    const SQL: &str = "SHOW synchronous_commit";
    let strict: String = sql!(db.latest().await?.conn(), query_scalar fetch_one, SQL)?;
    let fast: String = sql!(db.relaxed_writer().await?.conn(), query_scalar fetch_one, SQL)?;
    Ok(Some((strict, fast)))
}
