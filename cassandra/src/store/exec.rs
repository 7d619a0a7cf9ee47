//! Running statements: reads of one row, a bounded page or a whole partition, lightweight
//! transactions, and writes gathered into logged batches.

use futures::TryStreamExt;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::CassandraStore;
use crate::{corrupt, storage, Result};

/// A logged batch larger than this (in bytes of values) is split. Cassandra refuses batches
/// over `batch_size_fail_threshold` (50 KiB by default) and warns from 5 KiB.
const BATCH_BYTES: usize = 40 * 1024;

/// One write: a prepared statement and its values, so that writes of different shapes can go
/// into one batch.
pub(super) struct Write {
    stmt: PreparedStatement,
    values: Vec<CqlValue>,
}

impl Write {
    /// About how many bytes the write adds to a batch.
    fn size(&self) -> usize {
        self.values
            .iter()
            .map(|v| match v {
                CqlValue::Text(s) => s.len(),
                CqlValue::Blob(b) => b.len(),
                CqlValue::Set(items) => items.len() * 48,
                _ => 8,
            })
            .sum::<usize>()
            + 32
    }
}

/// Cuts `writes`, in order, into runs of at most [`BATCH_BYTES`] (a write larger than that
/// alone is a run of its own).
fn chunks(writes: Vec<Write>) -> Vec<Vec<Write>> {
    let mut chunk: Vec<Write> = Vec::new();
    let mut size = 0;
    let mut chunks = Vec::new();
    for w in writes {
        let s = w.size();
        if !chunk.is_empty() && size + s > BATCH_BYTES {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += s;
        chunk.push(w);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

impl CassandraStore {
    /// `stmt` with `values`, to be written.
    pub(super) fn w(&self, stmt: &PreparedStatement, values: Vec<CqlValue>) -> Write {
        Write {
            stmt: stmt.clone(),
            values,
        }
    }

    /// Runs writes as logged batches of at most [`BATCH_BYTES`], one after another (one
    /// batch: all or nothing; several: each all or nothing, stopping at the first failure).
    pub(super) async fn write_all(&self, writes: Vec<Write>) -> Result<()> {
        for c in chunks(writes) {
            self.write_batch(c).await?;
        }
        Ok(())
    }

    /// Runs writes as one logged batch, or a lone write as itself.
    pub(super) async fn write_batch(&self, writes: Vec<Write>) -> Result<()> {
        if writes.len() == 1 {
            let w = &writes[0];
            self.session
                .execute_unpaged(&w.stmt, &w.values)
                .await
                .map_err(storage)?;
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Logged);
        let mut values = Vec::with_capacity(writes.len());
        for w in writes {
            batch.append_statement(w.stmt);
            values.push(w.values);
        }
        self.session.batch(&batch, values).await.map_err(storage)?;
        Ok(())
    }

    /// The rows of a bounded read (one partition, or a `LIMIT`).
    pub(super) async fn rows<R>(
        &self,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>>
    where
        R: for<'a> DeserializeRow<'a, 'a>,
    {
        let result = self
            .session
            .execute_unpaged(stmt, values)
            .await
            .map_err(storage)?;
        let rows = result.into_rows_result().map_err(storage)?;
        let out = rows
            .rows::<R>()
            .map_err(corrupt)?
            .collect::<std::result::Result<Vec<R>, _>>()
            .map_err(corrupt);
        out
    }

    /// The first row of a read, if any.
    pub(super) async fn one<R>(
        &self,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>>
    where
        R: for<'a> DeserializeRow<'a, 'a>,
    {
        Ok(self.rows::<R>(stmt, values).await?.into_iter().next())
    }

    /// Every row of a read that may span pages (a partition of unknown size), page by page.
    pub(super) async fn all<R>(
        &self,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        self.session
            .execute_iter(stmt.clone(), values)
            .await
            .map_err(storage)?
            .rows_stream::<R>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(storage)
    }

    /// Whether a lightweight transaction applied (its first column, `[applied]`).
    pub(super) async fn lwt(
        &self,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<bool> {
        let row: Option<Row> = self.one(stmt, values).await?;
        Ok(matches!(
            row.and_then(|r| r.columns.into_iter().next()),
            Some(Some(CqlValue::Boolean(true)))
        ))
    }
}
