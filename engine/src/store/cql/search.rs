//! The CQL store's part of message search (issue 12; see [`crate::search`]): the paged scan of
//! every space the search indexer's catch-up and sweep walk. No table of its own (the index is
//! on each node's disk), so no schema version.
//!
//! `spaces_by_id` is partitioned by `space_id`, so a scan walks partitions in token order:
//! `token(space_id) > token(after)`, `LIMIT n`. Each page costs the spaces it returns (plus
//! their head rows, read for the counters).

use futures::future;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use super::{CqlStore, corrupt, unavailable};
use crate::error::{EngineError, Result};
use crate::model::{SpaceId, SpaceView};

pub(super) struct SearchStatements {
    first_spaces: PreparedStatement,
    spaces_after: PreparedStatement,
}

impl SearchStatements {
    pub(super) async fn prepare(s: &Session, ks: &str) -> Result<Self> {
        let p = |cql: String| async move {
            let mut st = s.prepare(cql).await.map_err(unavailable)?;
            // Reads: retrying one is safe.
            st.set_is_idempotent(true);
            Ok::<_, EngineError>(st)
        };
        Ok(SearchStatements {
            first_spaces: p(format!("SELECT space_id FROM {ks}.spaces_by_id LIMIT ?")).await?,
            spaces_after: p(format!(
                "SELECT space_id FROM {ks}.spaces_by_id WHERE token(space_id) > token(?) LIMIT ?"
            ))
            .await?,
        })
    }
}

impl CqlStore {
    pub(super) async fn search_scan_spaces(
        &self,
        after: Option<SpaceId>,
        limit: usize,
    ) -> Result<Vec<SpaceView>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let n = i32::try_from(limit).unwrap_or(i32::MAX);
        let st = &self.st.search;
        let result = match after {
            Some(a) => self.exec(&st.spaces_after, (a, n)).await?,
            None => self.exec(&st.first_spaces, (n,)).await?,
        };
        let rows = result.into_rows_result().map_err(unavailable)?;
        let ids: Vec<Uuid> = rows
            .rows::<(Uuid,)>()
            .map_err(corrupt)?
            .map(|r| r.map(|(id,)| id).map_err(corrupt))
            .collect::<Result<_>>()?;
        let views = future::try_join_all(ids.into_iter().map(|id| self.space_view(id))).await?;
        Ok(views.into_iter().flatten().collect())
    }
}
