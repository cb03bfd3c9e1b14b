//! `StoreHealth` on sled: the smoke round trip (a write to the `diag` tree, read back
//! and flushed), the size on disk, and closing (the writer commits what is queued and
//! makes it durable, then joins).

use super::writer::GroupCommitWriter;
use super::Inner;
use crate::store::{blocking, StoreError, StoreFuture, StoreHealth};
use futures_util::FutureExt;
use std::sync::Arc;

pub struct SledHealth {
    diag: sled::Tree,
    inner: Arc<Inner>,
    writer: Arc<GroupCommitWriter>,
}

impl SledHealth {
    pub fn open(
        db: &sled::Db,
        inner: Arc<Inner>,
        writer: Arc<GroupCommitWriter>,
    ) -> crate::store::StoreResult<Self> {
        Ok(Self {
            diag: db.open_tree("diag")?,
            inner,
            writer,
        })
    }
}

impl StoreHealth for SledHealth {
    fn backend(&self) -> &'static str {
        "sled"
    }

    fn round_trip(&self) -> StoreFuture<()> {
        let (diag, inner) = (self.diag.clone(), self.inner.clone());
        async move {
            let token = ulid::Ulid::new().to_string();
            let written = token.clone();
            let read = blocking(move || {
                diag.insert("smoke", written.as_bytes())?;
                Ok(diag.get("smoke")?)
            })
            .await?;
            super::flush(inner).await?;
            match read {
                Some(v) if v.as_ref() == token.as_bytes() => Ok(()),
                _ => Err(StoreError::Corrupt {
                    tree: "diag",
                    problem: "read back a different value".into(),
                }),
            }
        }
        .boxed()
    }

    fn size_on_disk(&self) -> StoreFuture<Option<u64>> {
        let inner = self.inner.clone();
        blocking(move || Ok(Some(inner.db.size_on_disk()?))).boxed()
    }

    fn flush(&self) -> StoreFuture<()> {
        super::flush(self.inner.clone()).boxed()
    }

    fn close(&self) {
        self.inner.filter.abandon();
        self.writer.stop();
    }
}
