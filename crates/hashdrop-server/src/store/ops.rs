//! Operator tasks on the database itself.

use super::{on_conn, Backend, Db};

/// Writes a consistent snapshot of the SQLite database to `path` (`VACUUM INTO`).
pub async fn snapshot_sqlite(db: &Db, path: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        db.backend() == Backend::Sqlite,
        "backups are built for SQLite only (use pg_dump for PostgreSQL)"
    );
    // VACUUM INTO takes no parameters: the path is quoted as a SQL string literal.
    let sql = format!("VACUUM INTO '{}'", path.replace('\'', "''"));
    let mut c = db.latest().await?;
    on_conn!(c.conn(), |c| sqlx::query(&sql)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
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
    let mut primary = db.latest().await?;
    let strict: String = on_conn!(primary.conn(), |c| sqlx::query_scalar(SQL)
        .fetch_one(&mut *c)
        .await)?;
    let mut relaxed = db.relaxed_writer().await?;
    let fast: String = on_conn!(relaxed.conn(), |c| sqlx::query_scalar(SQL)
        .fetch_one(&mut *c)
        .await)?;
    Ok(Some((strict, fast)))
}
