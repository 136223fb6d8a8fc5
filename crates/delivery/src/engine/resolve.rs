//! Phases 2 and 3b: what the batch's users and audience pages resolve to, and the rows an
//! earlier attempt left open that this attempt will not write.

use std::time::Instant;

use super::batch::Batch;
use super::Engine;
use crate::store::{Resolution, StoreError};

impl Engine {
    /// Phase 2: one query, every (app, user) of the batch to their live devices seen within the
    /// stale age; one more, every audience page of the batch to its devices.
    pub(super) async fn resolve_users(
        &self,
        batch: &Batch<'_>,
        deadline: Instant,
    ) -> Result<Resolution, StoreError> {
        let users = batch.app_users();
        let mut resolution = if users.is_empty() {
            Resolution::default()
        } else {
            self.timed(
                "resolving user ids",
                Some(deadline),
                self.store.resolve_devices(&users, self.stale_before()),
            )
            .await?
        };
        let pages = batch.page_queries();
        if !pages.is_empty() {
            resolution.pages = self.resolve_pages(&pages, deadline).await?;
        }
        Ok(resolution)
    }

    /// When a device last seen before counts as stale, if devices go stale.
    pub(super) fn stale_before(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::Duration::from_std(self.policy.stale_device_after)
            .ok()
            .and_then(|age| self.now().checked_sub_signed(age))
    }

    /// Phase 3b, only for pushes naming users that the queue may have delivered before: one
    /// query finds the rows their earlier attempts left open, and those this plan does not
    /// cover are closed ([`Batch::close_unplanned`]).
    pub(super) async fn close_earlier_rows(
        &self,
        batch: &mut Batch<'_>,
        devices: &Resolution,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let pushes = batch.seen_user_pushes();
        if !pushes.is_empty() {
            let users = batch.users_of(&pushes);
            let open = self
                .store
                .open_user_rows(&pushes, &users, chrono::Utc::now());
            let open = self.timed("finding rows left open", Some(deadline), open);
            batch.close_unplanned(open.await?);
        }
        // A redelivered audience page whose devices went since (invalidated, stale): one
        // query for the rows its earlier attempt left open for them.
        let gone = batch.gone_page_devices(devices);
        if !gone.is_empty() {
            let pushes: Vec<String> = gone.iter().map(|(p, _, _)| p.clone()).collect();
            let users: Vec<String> = gone.iter().map(|(_, u, _)| u.clone()).collect();
            let (pushes, users) = (dedup(pushes), dedup(users));
            let open = self
                .store
                .open_user_rows(&pushes, &users, chrono::Utc::now());
            let open = self.timed("finding rows left open", Some(deadline), open);
            batch.close_gone_page_rows(open.await?, &gone);
        }
        Ok(())
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}
